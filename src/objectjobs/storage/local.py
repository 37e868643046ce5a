"""The local-directory driver (SPEC §5.2): a bucket is a directory, an object a file.

Bookkeeping lives under ``<root>/.objectjobs/<bucket>/``: bucket configurations as
``lifecycle.json`` / ``replication.json`` / ``notification.json`` (boto3's shape), one JSON
sidecar per object under ``meta/<key>.json`` (etag cached at write time, content headers,
user metadata, tags) and multipart uploads under ``uploads/<upload_id>/``. No versions.

The blocking work runs on the driver's own threads, one hop per call (or per batch):
writes and copies in ``local_write``, multipart in ``local_multipart``, the sorted walk
and sidecars in ``local_files``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import stat
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from objectjobs.errors import (
    ConfigurationError,
    ConfigurationNotFound,
    NotSupported,
    ObjectNotFound,
    StorageError,
)
from objectjobs.storage import local_files as lf
from objectjobs.storage import local_multipart as lm
from objectjobs.storage import local_write as lw
from objectjobs.storage.interface import (
    Body,
    Capabilities,
    ConfigKind,
    CopyRequest,
    DeleteResult,
    MultipartUpload,
    ObjectInfo,
    ObjectMeta,
    ObjectStream,
    ObjectVersion,
    Part,
    Storage,
    VersioningStatus,
    WriteResult,
)
from objectjobs.storage.key_splits import split_keys

_CONFIG_KINDS = ("lifecycle", "replication", "notification")
_NOTIFICATION_KEYS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)
_WALK_BATCH = 1000  # entries produced per thread hop while listing


T = TypeVar("T")
_IoRunner = Callable[..., Any]


def _unlink_object(path: str) -> None:
    """Unlink the file at a key's path. A directory there is a prefix of other keys, never
    an object: left alone. One syscall per object: in a batch every extra one is another
    GIL round trip for the deleting thread."""
    try:
        os.unlink(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    except PermissionError:
        if not os.path.isdir(path):  # some systems answer EPERM for a directory
            raise


def _unlink_missing_ok(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        os.unlink(path)


class _LocalStream(ObjectStream):
    def __init__(self, f: IO[bytes], remaining: int, info: ObjectInfo, io: _IoRunner) -> None:
        self.info = info
        self._io = io
        self._f: IO[bytes] | None = f
        self._remaining = remaining

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self._f is not None and self._remaining > 0:
            chunk = await self._io(self._f.read, min(lf.CHUNK, self._remaining))
            if not chunk:
                break
            self._remaining -= len(chunk)
            yield chunk
        await self.aclose()

    async def aclose(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            await self._io(f.close)


class LocalStorage(Storage):
    driver = "local"
    capabilities = Capabilities(
        server_side_copy=True,
        multipart=True,
        tags=True,
        batch_delete=True,
        batch_copy=True,
        lifecycle_config=True,
        replication_config=True,
        notification_config=True,
        listings_per_process=1,
    )

    def __init__(self, root: Path, *, io_threads: int = 32, copy_batches: int = 1) -> None:
        # the driver's own threads: blocking file calls of many objects in flight would
        # queue behind each other on asyncio's small default pool (cpu + 4 threads)
        self._io_threads = io_threads
        # copy_many batches running at once (storage.copy_threads). A batch keeps its
        # thread busy: its copies are Python between a dozen short syscalls, each handing
        # the GIL over. A second batch in the process mostly adds hand-offs: 100,000 small
        # files on tmpfs, 2 processes, took 12.1-13.5 s and 19.6-21.6 CPU s with 1, and
        # 14.8-15.9 s and 23.2-24.8 CPU s with 4. Parallelism comes from the worker's
        # processes; more batches pay off where each copy waits on a slow filesystem.
        if copy_batches < 1:
            raise ConfigurationError("storage.copy_threads must be at least 1")
        self._copy_batches = copy_batches
        self._batch_gate: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._pool: ThreadPoolExecutor | None = self._new_pool()
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.endpoint_id = f"local:{self.root}"
        self._meta_root = self.root / lf.META_DIR
        self._tmp = self._meta_root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # the per-object paths as plain strings: pathlib's joins cost more than the
        # syscalls on a small file
        self._paths = lw.LocalPaths(str(self.root))

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._io_threads, thread_name_prefix="local-io")

    async def _io(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking file call on the driver's threads."""
        if self._pool is None:  # closed, then used again: a driver is cheap to revive
            self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except OSError as e:  # the boundary: callers see our exception tree only
            raise lf.os_error(e) from e

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    # --- paths ----------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return Path(self._paths.bucket_dir(bucket))

    def _existing_bucket(self, bucket: str) -> Path:
        return lm.existing_bucket(self._paths, bucket)

    # --- buckets --------------------------------------------------------------------------

    async def bucket_exists(self, bucket: str) -> bool:
        return await self._io(self._bucket_dir(bucket).is_dir)

    async def list_buckets(self) -> list[str]:
        def scan() -> list[str]:
            with os.scandir(self.root) as it:
                return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))

        return await self._io(scan)

    async def create_bucket(
        self, bucket: str, *, versioning: bool = False, object_lock: bool = False
    ) -> None:
        if versioning or object_lock:
            raise NotSupported("the local driver has no versioning nor object lock")
        d = self._bucket_dir(bucket)
        await self._io(d.mkdir, exist_ok=True)

    async def get_versioning(self, bucket: str) -> VersioningStatus:
        await self._io(self._existing_bucket, bucket)
        return None

    async def put_versioning(self, bucket: str, status: Literal["Enabled", "Suspended"]) -> None:
        raise NotSupported("the local driver has no versioning")

    def _config_path(self, bucket: str, kind: ConfigKind) -> Path:
        if kind not in _CONFIG_KINDS:
            raise StorageError(f"unknown configuration kind {kind!r}")
        self._existing_bucket(bucket)
        return self._meta_root / bucket / f"{kind}.json"

    async def get_bucket_config(self, bucket: str, kind: ConfigKind) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            path = self._config_path(bucket, kind)
            try:
                data: dict[str, Any] = json.loads(path.read_bytes())
            except FileNotFoundError:
                raise ConfigurationNotFound(
                    f"bucket {bucket!r} has no {kind} configuration"
                ) from None
            except ValueError as e:
                raise StorageError(f"unreadable {kind} configuration: {e}") from e
            if kind == "notification" and not any(data.get(k) for k in _NOTIFICATION_KEYS):
                raise ConfigurationNotFound(f"bucket {bucket!r} has no notification configuration")
            return data

        return await self._io(read)

    async def put_bucket_config(
        self, bucket: str, kind: ConfigKind, config: dict[str, Any]
    ) -> None:
        data = json.dumps(config, indent=2, default=str).encode()

        def write() -> None:
            lf.write_atomic(self._config_path(bucket, kind), data, self._tmp)

        await self._io(write)

    async def delete_bucket_config(self, bucket: str, kind: ConfigKind) -> None:
        def remove() -> None:
            self._config_path(bucket, kind).unlink(missing_ok=True)

        await self._io(remove)

    # --- listing --------------------------------------------------------------------------

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
        etags: bool = True,
    ) -> AsyncIterator[list[ObjectVersion]]:
        bucket_dir = self._bucket_dir(bucket)
        walker = lf.walk_sorted(
            bucket_dir,
            self._meta_root / bucket / "meta",
            prefix=prefix,
            start_after=start_after,
            end_key=end_key,
            etags=etags,
            batch=max(1, min(page_size, _WALK_BATCH)),
        )
        page_size = max(1, page_size)

        def take() -> tuple[list[ObjectVersion], bool]:
            """At least a page's worth of files, or what is left; whether that was all."""
            got: list[ObjectVersion] = []
            for files in walker:
                got += files
                if len(got) >= page_size:
                    return got, False
            return got, True

        page: list[ObjectVersion] = []
        ended = False
        while not ended:
            got, ended = await self._io(take)
            page += got
            while len(page) >= page_size:
                yield page[:page_size]
                page = page[page_size:]
        if page:
            yield page

    def list_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        return self.list_objects(
            bucket, prefix=prefix, start_after=start_after, end_key=end_key, page_size=page_size
        )

    def list_versions_sized(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        # no sidecar reads: stat only, a third of the cost of a listing with etags
        return self.list_objects(
            bucket,
            prefix=prefix,
            start_after=start_after,
            end_key=end_key,
            page_size=page_size,
            etags=False,
        )

    async def key_splits(
        self, bucket: str, *, prefix: str = "", start_after: str = "", parts: int = 2
    ) -> list[str]:
        bucket_dir = str(self._existing_bucket(bucket))

        async def children(directory: str) -> list[str]:
            return await self._io(lf.dir_entries, f"{bucket_dir}/{directory}", directory)

        return await split_keys(children, prefix, start_after, parts)

    async def list_uploads(
        self, bucket: str, *, prefix: str = ""
    ) -> AsyncIterator[list[MultipartUpload]]:
        uploads = await self._io(lm.list_uploads, self._paths, bucket, prefix)
        for i in range(0, len(uploads), 1000):
            yield uploads[i : i + 1000]

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> AsyncIterator[list[Part]]:
        parts = await self._io(lm.read_parts, self._paths, bucket, key, upload_id)
        for i in range(0, len(parts), 1000):
            yield parts[i : i + 1000]

    # --- objects --------------------------------------------------------------------------

    def _head_sync(self, bucket: str, key: str, version_id: str | None) -> tuple[ObjectInfo, str]:
        lw.check_version(version_id, key)
        path = self._paths.file(bucket, key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._paths.missing(bucket, key) from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{bucket}/{key} not found")
        sc_path = self._paths.sidecar(bucket, key)
        sc = lf.read_sidecar(sc_path)
        if sc is None or not sc.matches(st):
            # written by another tool (or since): compute the etag once and cache it
            etag = lf.md5_file(path)
            sc = lf.Sidecar(
                etag, st.st_size, st.st_mtime_ns, sc.meta if sc else {}, sc.tags if sc else {}
            )
            with contextlib.suppress(OSError):
                lf.write_atomic(sc_path, sc.to_bytes(), self._paths.tmp)
        parts = None
        if sc.etag and "-" in sc.etag:
            parts = int(sc.etag.strip('"').rsplit("-", 1)[1])
        info = ObjectInfo(
            key=key,
            version_id=None,
            size=st.st_size,
            etag=sc.etag,
            last_modified=lf.utc_from_ns(st.st_mtime_ns),
            meta=lf.meta_from_json(sc.meta, dict(sc.tags)),
            parts_count=parts,
        )
        return info, path

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        info, _ = await self._io(self._head_sync, bucket, key, version_id)
        return info

    async def get(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        byte_range: tuple[int, int] | None = None,
    ) -> ObjectStream:
        def open_() -> tuple[IO[bytes], int, ObjectInfo]:
            info, path = self._head_sync(bucket, key, version_id)
            start, length = 0, info.size
            if byte_range is not None:
                first, last = byte_range
                if first < 0 or first >= info.size or last < first:
                    raise StorageError(f"invalid range {byte_range} for size {info.size}")
                start, length = first, min(last, info.size - 1) - first + 1
            try:
                f = open(path, "rb")  # noqa: SIM115 - the stream closes it
            except FileNotFoundError:
                raise ObjectNotFound(f"{bucket}/{key} not found") from None
            f.seek(start)
            return f, length, info

        f, length, info = await self._io(open_)
        return _LocalStream(f, length, info, self._io)

    @staticmethod
    def _check_meta(meta: ObjectMeta | None) -> None:
        if meta is not None and (
            meta.object_lock_mode or meta.object_lock_retain_until or meta.legal_hold
        ):
            raise NotSupported("the local driver has no object lock")

    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        meta: ObjectMeta | None = None,
        size: int | None = None,
    ) -> WriteResult:
        self._check_meta(meta)
        if isinstance(body, bytes | bytearray | memoryview):
            etag = await self._io(lw.write_new, self._paths, bucket, key, bytes(body), meta)
            return WriteResult(etag=etag, version_id=None)
        await self._io(self._object_in_bucket, bucket, key)  # validates before writing
        tmp = self._paths.tmp_file()
        h = hashlib.md5(usedforsecurity=False)
        f = await self._io(open, tmp, "wb")
        try:
            async for chunk in body:
                h.update(chunk)
                await self._io(f.write, chunk)
            etag = f'"{h.hexdigest()}"'
            tags = dict(meta.tags or {}) if meta else {}

            def finish() -> None:
                f.close()
                lw.install(self._paths, tmp, bucket, key, etag, lf.meta_to_json(meta), tags)

            await self._io(finish)
        finally:
            f.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # only when something failed: installing moved it
        return WriteResult(etag=etag, version_id=None)

    def _object_in_bucket(self, bucket: str, key: str) -> None:
        lf.check_key(key)
        self._existing_bucket(bucket)

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
        self._check_meta(meta)
        req = CopyRequest(src_key, dst_key, src_version_id, meta, size)
        return await self._io(lw.copy_object, self._paths, src_bucket, dst_bucket, req)

    async def copy_many(
        self, src_bucket: str, dst_bucket: str, items: Sequence[CopyRequest]
    ) -> list[WriteResult | StorageError]:
        for r in items:
            self._check_meta(r.meta)
        loop = asyncio.get_running_loop()
        if self._batch_gate is None or self._batch_gate[0] is not loop:
            # a semaphore belongs to the loop it is first used in; a driver may outlive one
            self._batch_gate = (loop, asyncio.Semaphore(self._copy_batches))
        # one thread hop for them all: a hop (submit, wake-up, future chained back to the
        # loop) costs about what the copy of a small file does
        async with self._batch_gate[1]:
            return await self._io(lw.copy_many, self._paths, src_bucket, dst_bucket, items)

    def _delete_sync(
        self, bucket: str, items: Sequence[tuple[str, str | None]]
    ) -> list[DeleteResult]:
        """Delete a batch: one unlink per file, one per sidecar where its directory has a
        sidecar directory at all, then each directory the batch emptied is pruned once (not
        once per key). A crash before the pruning leaves empty directories only: they hold
        no key, and listings skip them."""
        bucket_dir = self._existing_bucket(bucket)
        meta_dir = self._meta_root / bucket / "meta"
        base, meta_base = str(bucket_dir), str(meta_dir)
        out: list[DeleteResult] = []
        # directory -> whether its sidecar directory exists: files written by other tools
        # have none, and then there is no sidecar to unlink per file
        emptied: dict[str, bool] = {}
        for key, vid in items:
            if vid not in (None, "null"):
                out.append(DeleteResult(key, vid))  # no such version: S3 deletes nothing, OK
                continue
            try:
                lf.check_key(key)
                _unlink_object(f"{base}/{key}")
                rel = key.rpartition("/")[0]  # a checked key's os.path.dirname, at 1/6 the cost
                sidecars = emptied.get(rel)
                if sidecars is None:
                    sidecars = emptied[rel] = os.path.isdir(f"{meta_base}/{rel}")
                if sidecars:
                    _unlink_missing_ok(f"{meta_base}/{key}.json")
            except (StorageError, OSError) as e:
                err = e if isinstance(e, StorageError) else StorageError(f"{key!r}: {e}")
                out.append(DeleteResult(key, vid, error_code=err.code, error_message=err.message))
                continue
            out.append(DeleteResult(key, vid))
        # deepest first, so a parent is tried once its children had their chance
        for rel in sorted(emptied, key=lambda d: d.count("/"), reverse=True):
            if rel:
                lf.remove_empty_dirs(bucket_dir / rel, bucket_dir)
                lf.remove_empty_dirs(meta_dir / rel, meta_dir)
        return out

    async def delete(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        if version_id not in (None, "null"):
            return DeleteResult(key=key, version_id=version_id)  # S3: deleting nothing succeeds
        [result] = await self._io(self._delete_sync, bucket, [(key, version_id)])
        if result.error_code is not None:
            raise StorageError(result.error_message or result.error_code)
        return result

    async def delete_many(
        self, bucket: str, items: Sequence[tuple[str, str | None]]
    ) -> list[DeleteResult]:
        return await self._io(self._delete_sync, bucket, items)

    async def get_tags(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> dict[str, str]:
        info = await self.head(bucket, key, version_id)
        return dict(info.meta.tags or {})

    async def put_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> None:
        def do() -> None:
            self._head_sync(bucket, key, version_id)  # ensures the sidecar is current
            path = self._paths.sidecar(bucket, key)
            sc = lf.read_sidecar(path)
            assert sc is not None
            new = lf.Sidecar(sc.etag, sc.size, sc.mtime_ns, sc.meta, dict(tags))
            lf.write_atomic(path, new.to_bytes(), self._paths.tmp)

        await self._io(do)

    # --- multipart (local_multipart) ------------------------------------------------------

    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta | None = None) -> str:
        self._check_meta(meta)
        return await self._io(lm.create, self._paths, bucket, key, meta)

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> Part:
        if not 1 <= part_number <= 10000:
            raise StorageError(f"part number {part_number} out of 1..10000")
        etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
        now = datetime.now(UTC)
        await self._io(
            lm.upload_part, self._paths, bucket, key, upload_id, part_number, data, etag, now
        )
        return Part(part_number=part_number, size=len(data), etag=etag, last_modified=now)

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[Part]
    ) -> WriteResult:
        return await self._io(lm.complete, self._paths, bucket, key, upload_id, list(parts))

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._io(lm.abort, self._paths, bucket, upload_id)
