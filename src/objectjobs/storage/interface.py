"""The storage contract every driver implements (SPEC §4), and the values it speaks in.

One narrow async interface, many backends (local directory, any S3 endpoint). What a
backend can do is declared as data in :class:`Capabilities`; callers check it, never the
driver's class. Every method raises only exceptions of ``objectjobs.errors``:

- ``BucketNotFound`` / ``ObjectNotFound`` / ``UploadNotFound`` / ``ConfigurationNotFound``
- ``AccessDenied`` (credentials refused, Object Lock refusal)
- ``NotSupported`` (the operation is not in this driver's capabilities)
- ``TransientStorageError`` (throttling, timeouts, 5xx; ``retryable = True``) and its
  subclass ``StorageUnavailable`` (endpoint unreachable)
- ``StorageError`` for anything else (permanent).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from objectjobs.errors import StorageError

ConfigKind = Literal["lifecycle", "replication", "notification"]
VersioningStatus = Literal["Enabled", "Suspended"] | None


@dataclass(frozen=True)
class Capabilities:
    """What a driver (and the server behind it) supports. Declared, never probed by type."""

    versioning: bool = False
    object_lock: bool = False
    server_side_copy: bool = False
    multipart: bool = False
    tags: bool = False
    storage_classes: bool = False  # can change an object's storage class (transitions)
    batch_delete: bool = False  # DeleteObjects with up to 1000 keys
    #: ``copy_many`` costs less than its copies one by one (the local driver: one thread
    #: hop for all of them); without it, callers copy one by one, in parallel
    batch_copy: bool = False
    lifecycle_config: bool = False
    replication_config: bool = False
    notification_config: bool = False
    max_batch_delete: int = 1000
    #: listings worth running at once in one process, 0 for any number. A local listing
    #: is Python work between short syscalls: several in one process contend for the GIL
    #: and take longer together than one after the other (8 at once: 2-3x the CPU)
    listings_per_process: int = 0


@dataclass(slots=True)
class ObjectVersion:
    """One entry of a listing: an object version or a delete marker.

    Unversioned stores give ``version_id=None`` and ``is_latest=True``. S3's null version
    is ``version_id="null"``. Treat it as immutable (``dataclasses.replace`` for a changed
    copy); it is not frozen because listings build millions of them, and a frozen
    dataclass costs four times as much to build.
    """

    key: str
    version_id: str | None
    is_latest: bool
    is_delete_marker: bool
    size: int
    etag: str | None
    last_modified: datetime
    storage_class: str = "STANDARD"


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    key: str
    upload_id: str
    initiated: datetime
    storage_class: str = "STANDARD"


@dataclass(frozen=True, slots=True)
class Part:
    part_number: int
    size: int
    etag: str
    last_modified: datetime | None = None


@dataclass(frozen=True)
class ObjectMeta:
    """What may be set on an object when it is written: kept by copies (SPEC §3.3)."""

    content_type: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    content_disposition: str | None = None
    cache_control: str | None = None
    expires: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # user metadata, without x-amz-meta-
    storage_class: str | None = None
    tags: dict[str, str] | None = None
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None
    object_lock_retain_until: datetime | None = None
    legal_hold: bool | None = None


@dataclass(frozen=True)
class ObjectInfo:
    """The answer of ``head``: the object's state and everything ``ObjectMeta`` can set."""

    key: str
    version_id: str | None
    size: int
    etag: str | None
    last_modified: datetime
    meta: ObjectMeta
    storage_class: str = "STANDARD"
    replication_status: str | None = None  # PENDING / COMPLETED / FAILED / REPLICA
    checksums: dict[str, str] = field(default_factory=dict)  # e.g. {"CRC32": "..."}
    parts_count: int | None = None


@dataclass(frozen=True)
class WriteResult:
    etag: str | None
    version_id: str | None
    #: bytes stored, when the driver knows it without asking the store (a copy's
    #: verification then needs no HEAD); None when it does not
    size: int | None = None


class CopyRequest(NamedTuple):
    """One copy of ``Storage.copy_many`` (the arguments of ``copy`` beyond the buckets).
    A named tuple: one is built per object copied, at half a frozen dataclass's cost."""

    src_key: str
    dst_key: str
    src_version_id: str | None = None
    meta: ObjectMeta | None = None
    size: int | None = None


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of deleting one (key, version). ``error_code`` set means it failed."""

    key: str
    version_id: str | None
    delete_marker: bool = False
    delete_marker_version_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None


class ObjectStream(abc.ABC):
    """A streamed object body: iterate it for chunks; always ``aclose`` (or use ``async with``)."""

    info: ObjectInfo

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def read(self) -> bytes:
        """Read the whole body. Only for small objects (tests, configs)."""
        return b"".join([chunk async for chunk in self])

    async def __aenter__(self) -> ObjectStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


Body = bytes | AsyncIterable[bytes]


class Storage(abc.ABC):
    """A connection to one storage endpoint (a local root, or one S3 endpoint)."""

    #: short driver name, used as a metrics label ("local", "s3")
    driver: str
    capabilities: Capabilities
    #: identifies the endpoint; equal endpoints can copy server-side between each other
    endpoint_id: str

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent."""

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- buckets ------------------------------------------------------------------------

    @abc.abstractmethod
    async def bucket_exists(self, bucket: str) -> bool:
        """True when the bucket exists. Raises StorageUnavailable/AccessDenied."""

    @abc.abstractmethod
    async def list_buckets(self) -> list[str]:
        """Names of all buckets, sorted."""

    @abc.abstractmethod
    async def create_bucket(
        self, bucket: str, *, versioning: bool = False, object_lock: bool = False
    ) -> None:
        """Create a bucket (idempotent if it exists and is ours). NotSupported for
        ``versioning``/``object_lock`` when not in capabilities."""

    @abc.abstractmethod
    async def get_versioning(self, bucket: str) -> VersioningStatus:
        """``"Enabled"``, ``"Suspended"`` or None (never enabled). BucketNotFound."""

    @abc.abstractmethod
    async def put_versioning(self, bucket: str, status: Literal["Enabled", "Suspended"]) -> None:
        """Enable or suspend versioning. NotSupported without the capability."""

    @abc.abstractmethod
    async def get_bucket_config(self, bucket: str, kind: ConfigKind) -> dict[str, Any]:
        """The bucket's lifecycle/replication/notification configuration in the shape boto3
        returns (``{"Rules": [...]}``, ``{"Role":..., "Rules": [...]}``,
        ``{"TopicConfigurations": [...], "QueueConfigurations": [...], ...}``).
        Raises ConfigurationNotFound when none is set, BucketNotFound, NotSupported."""

    @abc.abstractmethod
    async def put_bucket_config(
        self, bucket: str, kind: ConfigKind, config: dict[str, Any]
    ) -> None:
        """Set a bucket configuration (same shape as get_bucket_config)."""

    @abc.abstractmethod
    async def delete_bucket_config(self, bucket: str, kind: ConfigKind) -> None:
        """Remove a bucket configuration; no error if none is set."""

    # --- listing ------------------------------------------------------------------------

    @abc.abstractmethod
    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        """Current objects (no versions, no delete markers) in key order, in pages.

        Keys strictly after ``start_after`` and up to ``end_key`` inclusive, under
        ``prefix``. BucketNotFound."""

    @abc.abstractmethod
    def list_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        """Every version and delete marker, keys in order, a key's versions newest first
        (S3's order), in pages. A key's versions never straddle ``start_after``: listing
        resumes at the first key after it. Unversioned stores list current objects."""

    def list_versions_sized(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        """``list_versions`` for a caller that compares by size and time only: a driver
        may leave ``etag`` None where knowing it costs more than listing (the local
        driver reads a sidecar file per object for it). By default, ``list_versions``."""
        return self.list_versions(
            bucket, prefix=prefix, start_after=start_after, end_key=end_key, page_size=page_size
        )

    async def key_splits(
        self, bucket: str, *, prefix: str = "", start_after: str = "", parts: int = 2
    ) -> list[str]:
        """Up to ``parts - 1`` ascending keys, each after ``start_after``, that cut the
        keys under ``prefix`` after ``start_after`` into ranges (start_after, b1], (b1, b2],
        ..., (bn, end) of roughly alike size, found without listing them: a few readings
        of the bucket's "directory" levels (see ``key_splits.split_keys``). A guess, not a
        count; [] when the driver cannot tell cheaply (the default). BucketNotFound."""
        return []

    @abc.abstractmethod
    def list_uploads(
        self, bucket: str, *, prefix: str = ""
    ) -> AsyncIterator[list[MultipartUpload]]:
        """Incomplete multipart uploads, in key order, in pages."""

    @abc.abstractmethod
    def list_parts(self, bucket: str, key: str, upload_id: str) -> AsyncIterator[list[Part]]:
        """Parts uploaded so far to an upload, in part-number order. UploadNotFound."""

    # --- objects ------------------------------------------------------------------------

    @abc.abstractmethod
    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        """Metadata of an object (version), with tags, retention and legal hold where the
        driver has them. ObjectNotFound (also for a delete marker)."""

    @abc.abstractmethod
    async def get(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        byte_range: tuple[int, int] | None = None,
    ) -> ObjectStream:
        """Open the body for streaming (``byte_range`` inclusive). Memory stays bounded by
        the chunk size whatever the object's size. ObjectNotFound."""

    @abc.abstractmethod
    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        meta: ObjectMeta | None = None,
        size: int | None = None,
    ) -> WriteResult:
        """Write an object from bytes or a stream of chunks; large or unsized streams go up
        as multipart (driver's chunk size), so memory stays bounded. BucketNotFound."""

    @abc.abstractmethod
    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        src_version_id: str | None = None,
        meta: ObjectMeta | None = None,
        size: int | None = None,
    ) -> WriteResult:
        """Server-side copy within this endpoint (multipart part-copy above the driver's
        single-copy limit). ``meta`` None keeps the source's metadata and tags; given, it
        replaces them. NotSupported without ``server_side_copy``; ObjectNotFound."""

    async def copy_many(
        self, src_bucket: str, dst_bucket: str, items: Sequence[CopyRequest]
    ) -> list[WriteResult | StorageError]:
        """Several server-side copies from one bucket to another, each as ``copy`` does
        it; a copy's failure is its entry, not raised. Worth calling only with the
        ``batch_copy`` capability: by default the copies run one after another."""
        out: list[WriteResult | StorageError] = []
        for r in items:
            try:
                out.append(
                    await self.copy(
                        src_bucket,
                        r.src_key,
                        dst_bucket,
                        r.dst_key,
                        src_version_id=r.src_version_id,
                        meta=r.meta,
                        size=r.size,
                    )
                )
            except StorageError as e:
                out.append(e)
        return out

    @abc.abstractmethod
    async def delete(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        """Delete a version (or, without ``version_id``, the current object: a delete marker
        on a versioned bucket). Deleting what does not exist succeeds. AccessDenied when
        Object Lock refuses; never bypasses governance retention."""

    @abc.abstractmethod
    async def delete_many(
        self, bucket: str, items: Sequence[tuple[str, str | None]]
    ) -> list[DeleteResult]:
        """Delete up to ``capabilities.max_batch_delete`` (key, version) pairs in one request;
        per-item failures are in the results, not raised."""

    @abc.abstractmethod
    async def get_tags(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> dict[str, str]:
        """The object's tags (empty dict when none). ObjectNotFound; NotSupported."""

    @abc.abstractmethod
    async def put_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> None:
        """Replace the object's tags. ObjectNotFound; NotSupported."""

    # --- multipart ----------------------------------------------------------------------

    @abc.abstractmethod
    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta | None = None) -> str:
        """Start a multipart upload; returns its upload id."""

    @abc.abstractmethod
    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> Part:
        """Upload one part. UploadNotFound."""

    @abc.abstractmethod
    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[Part]
    ) -> WriteResult:
        """Complete an upload from its parts."""

    @abc.abstractmethod
    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Abort an upload; aborting one that is gone succeeds."""
