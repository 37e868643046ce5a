"""Copy one object version to another bucket with its metadata, and verify the copy.

Same endpoint (equal ``endpoint_id``, so the same credentials reach both buckets): the
server copies (the driver switches to multipart part-copy above its single-copy limit).
Otherwise the body is streamed GET→PUT, as multipart parts of ``part_size`` with at most
two parts buffered per object and a job-wide :class:`ByteBudget`, so memory stays bounded
whatever the objects' sizes.

Verification (SPEC §3.3, "size and ETag, or checksum when the ETag is not an MD5"):

- streamed: the bytes read must add up to the source's size; when the source ETag is a
  plain MD5 the MD5 of the bytes read must equal it (what we read is the source), and the
  target's ETag must equal the ETag computed from what we sent (MD5, or for multipart the
  MD5 of the parts' MD5s and ``-N``), so what was stored is what was read. For a multipart
  source we pick the part size that reproduces its part count, so the target's ETag
  usually equals the source's end to end; when the source's parts were uneven it cannot,
  and the check is size + per-part MD5 of what was written.
- server-side: a plain-MD5 source ETag must come back as the copy's ETag; otherwise (a
  multipart source, whose copy may get a new ETag, or a source whose ETag the listing did
  not know) the copy's size is checked: the size the driver reports it wrote (the local
  driver knows it), else a HEAD. A size the driver reports is checked in every case.

A driver with the ``batch_copy`` capability (local) takes several server-side copies in
one call: :func:`copy_versions`, verified each as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from objectjobs.errors import StorageError
from objectjobs.replication import plain_md5
from objectjobs.storage.interface import (
    CopyRequest,
    ObjectInfo,
    ObjectMeta,
    ObjectVersion,
    Part,
    Storage,
    WriteResult,
)

MiB = 1024 * 1024
_MIN_PART = 5 * MiB
_MAX_PARTS = 10_000
_PARTS_IN_FLIGHT = 2


class ByteBudget:
    """Bytes that buffered parts may hold at once, shared by every copy of a task."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cond = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, n: int) -> AsyncIterator[None]:
        n = min(n, self.limit)  # one part larger than the budget still goes, alone
        async with self._cond:
            await self._cond.wait_for(lambda: self._used + n <= self.limit)
            self._used += n
        try:
            yield
        finally:
            async with self._cond:
                self._used -= n
                self._cond.notify_all()


@dataclass(frozen=True)
class Endpoint:
    storage: Storage
    bucket: str


@dataclass(frozen=True)
class CopyOptions:
    part_size: int = 16 * MiB
    #: read the source's Object Lock retention/legal hold (a HEAD) for server-side copies;
    #: only worth it when the source can have them and the target can keep them
    keep_lock: bool = False


def source_version_id(version: ObjectVersion) -> str | None:
    # an unversioned bucket lists its objects as version "null", which some servers (moto)
    # refuse as a VersionId; while it is the latest, "the current object" is the same thing
    if version.version_id == "null" and version.is_latest:
        return None
    return version.version_id


def same_endpoint(a: Storage, b: Storage) -> bool:
    return a is b or a.endpoint_id == b.endpoint_id


def target_meta(info: ObjectInfo, dst: Storage) -> ObjectMeta:
    """The source's metadata, minus what the target cannot store."""
    meta = info.meta
    caps = dst.capabilities
    if not meta.tags:
        # no tags: None leaves them out of the request (an empty tag set is refused by some
        # servers, and a copy without tags copies none)
        meta = dataclasses.replace(meta, tags=None)
    if not caps.object_lock:
        meta = dataclasses.replace(
            meta, object_lock_mode=None, object_lock_retain_until=None, legal_hold=None
        )
    if not caps.tags:
        meta = dataclasses.replace(meta, tags=None)
    if not caps.storage_classes or meta.storage_class == "STANDARD":
        meta = dataclasses.replace(meta, storage_class=None)
    return meta


async def copy_version(
    src: Endpoint, version: ObjectVersion, dst: Endpoint, opts: CopyOptions, budget: ByteBudget
) -> int:
    """Copy one object version (a delete marker: make one on the target). Returns the bytes
    copied. ObjectNotFound when the source version is gone; StorageError when the copy does
    not verify."""
    key = version.key
    if version.is_delete_marker:
        await dst.storage.delete(dst.bucket, key)
        return 0
    if same_endpoint(src.storage, dst.storage) and src.storage.capabilities.server_side_copy:
        return await _server_side(src, version, dst, opts)
    return await _streamed(src, version, dst, opts, budget)


async def _server_side(
    src: Endpoint, version: ObjectVersion, dst: Endpoint, opts: CopyOptions
) -> int:
    meta = None
    size = version.size
    etag = version.etag
    if opts.keep_lock:
        # a copy keeps metadata and tags by itself, but not retention/legal hold
        info = await src.storage.head(src.bucket, version.key, source_version_id(version))
        meta, size, etag = target_meta(info, dst.storage), info.size, info.etag
    result = await src.storage.copy(
        src.bucket,
        version.key,
        dst.bucket,
        version.key,
        src_version_id=source_version_id(version),
        meta=meta,
        size=size,
    )
    return await _verify_copy(version.key, size, etag, result, dst)


async def _verify_copy(
    key: str, size: int, etag: str | None, result: WriteResult, dst: Endpoint
) -> int:
    """Check a server-side copy of ``size`` bytes with source ETag ``etag``; the size."""
    if not _verified(key, size, etag, result):
        await _verify_stored_size(key, size, result, dst)
    return size


async def _verify_stored_size(key: str, size: int, result: WriteResult, dst: Endpoint) -> None:
    """Check the copy's size as stored (a HEAD), when its answer did not show it."""
    written = result.version_id if result.version_id not in (None, "null") else None
    stored = (await dst.storage.head(dst.bucket, key, written)).size
    if stored != size:
        raise StorageError(f"copy of {key} did not verify: size {stored} != {size}")


def _verified(key: str, size: int, etag: str | None, result: WriteResult) -> bool:
    """Whether the copy's answer shows it good (False: the stored size must be asked);
    StorageError when it shows it wrong."""
    if result.size is not None and result.size != size:
        raise StorageError(f"copy of {key} did not verify: size {result.size} != {size}")
    expected = plain_md5(etag)
    # the copy's ETag matters only next to a plain-MD5 source ETag (not known for files a
    # local bucket got from another tool: then it is not parsed at all)
    got = plain_md5(result.etag) if expected is not None else None
    if expected is not None and got is not None:
        # a single copy of a single-part object: the server hashed what it wrote
        if got != expected:
            raise StorageError(f"copy of {key} did not verify: ETag {result.etag} != {etag}")
        return True
    return result.size is not None


def batches_copies(src: Endpoint, dst: Endpoint, opts: CopyOptions) -> bool:
    """Whether :func:`copy_versions` can copy from ``src`` to ``dst`` in driver batches."""
    caps = src.storage.capabilities
    return (
        caps.batch_copy
        and caps.server_side_copy
        and same_endpoint(src.storage, dst.storage)
        # keeping Object Lock takes a HEAD of each source first (copy_version does it)
        and not opts.keep_lock
    )


async def copy_versions(
    src: Endpoint, versions: list[ObjectVersion], dst: Endpoint
) -> list[int | StorageError]:
    """Server-side copies of several object versions (no delete markers) in one driver
    call (only where :func:`batches_copies`): per version the bytes copied, or the error
    (ObjectNotFound when it is gone at the source; a copy that does not verify is a
    StorageError, as with :func:`copy_version`)."""
    requests = [CopyRequest(v.key, v.key, source_version_id(v), None, v.size) for v in versions]
    results = await src.storage.copy_many(src.bucket, dst.bucket, requests)
    out: list[int | StorageError] = []
    for v, r in zip(versions, results, strict=True):
        if isinstance(r, StorageError):
            out.append(r)
            continue
        try:
            # checked in place, awaiting only when a HEAD is needed (not on local)
            if not _verified(v.key, v.size, v.etag, r):
                await _verify_stored_size(v.key, v.size, r, dst)
            out.append(v.size)
        except StorageError as e:
            out.append(e)
    return out


def part_size_for(size: int, etag: str | None, default: int) -> int:
    """The part size reproducing a multipart source's part count (the smallest whole MiB
    that gives it), else ``default`` (grown so the parts stay within S3's 10,000)."""
    parts = _parts_of(etag)
    if parts and parts > 1:
        mib = max(_MIN_PART // MiB, math.ceil(size / parts / MiB))
        while math.ceil(size / (mib * MiB)) > parts:
            mib += 1
        if math.ceil(size / (mib * MiB)) == parts:
            return mib * MiB
    return max(default, _MIN_PART, math.ceil(size / _MAX_PARTS))


def _parts_of(etag: str | None) -> int | None:
    bare = (etag or "").strip('"')
    if "-" not in bare:
        return None
    try:
        return int(bare.rsplit("-", 1)[1])
    except ValueError:
        return None


async def _streamed(
    src: Endpoint, version: ObjectVersion, dst: Endpoint, opts: CopyOptions, budget: ByteBudget
) -> int:
    stream = await src.storage.get(src.bucket, version.key, source_version_id(version))
    async with stream:
        info = stream.info
        if info.meta.tags is None and src.storage.capabilities.tags:
            # get() does not return tags (S3 sends only their count); head has them
            info = await src.storage.head(src.bucket, version.key, source_version_id(version))
        meta = target_meta(info, dst.storage)
        part_size = part_size_for(info.size, info.etag, opts.part_size)
        whole = hashlib.md5(usedforsecurity=False)
        writer = _PartWriter(dst, version.key, meta)
        # the read buffer, the piece held back and the parts uploading: one reservation
        # for the whole copy, so copies never wait on each other half-way (no deadlock)
        reserve = min(info.size, part_size) * (2 + _PARTS_IN_FLIGHT)
        async with budget.hold(reserve):
            try:
                buf = bytearray()
                async for chunk in stream:
                    whole.update(chunk)
                    buf += chunk
                    while len(buf) >= part_size:
                        await writer.add(bytes(buf[:part_size]))
                        del buf[:part_size]
                if buf or writer.empty:
                    await writer.add(bytes(buf))
                del buf
                etag = await writer.finish()
            except BaseException:
                await writer.abort()
                raise
    read = writer.size
    if read != info.size:
        raise StorageError(f"copy of {version.key} did not verify: read {read} of {info.size}")
    source_md5 = plain_md5(info.etag)
    if source_md5 is not None and whole.hexdigest() != source_md5:
        raise StorageError(f"copy of {version.key} did not verify: body MD5 != source ETag")
    if (etag or "").strip('"') != writer.expected_etag().strip('"'):
        raise StorageError(
            f"copy of {version.key} did not verify: target ETag {etag} "
            f"!= {writer.expected_etag()} computed from the bytes sent"
        )
    return read


class _PartWriter:
    """Writes a body piece by piece: one piece is a single PUT, several a multipart upload
    with at most ``_PARTS_IN_FLIGHT`` parts uploading."""

    def __init__(self, dst: Endpoint, key: str, meta: ObjectMeta) -> None:
        self.dst, self.key, self.meta = dst, key, meta
        self.size = 0
        self._first: bytes | None = None
        self._digests: list[bytes] = []
        self._upload_id: str | None = None
        self._in_flight: set[asyncio.Task[Part]] = set()
        self._parts: list[Part] = []
        self._etag: str | None = None

    @property
    def empty(self) -> bool:
        return self._first is None and not self._digests

    async def add(self, piece: bytes) -> None:
        if self.empty:
            self._first = piece
            return
        if self._upload_id is None:
            assert self._first is not None
            self._upload_id = await self.dst.storage.create_upload(
                self.dst.bucket, self.key, meta=self.meta
            )
            first, self._first = self._first, None
            await self._send(first)
        await self._send(piece)

    async def _send(self, data: bytes) -> None:
        self.size += len(data)
        self._digests.append(hashlib.md5(data, usedforsecurity=False).digest())
        number = len(self._digests)
        while len(self._in_flight) >= _PARTS_IN_FLIGHT:
            done, self._in_flight = await asyncio.wait(
                self._in_flight, return_when=asyncio.FIRST_COMPLETED
            )
            self._parts.extend(t.result() for t in done)
        assert self._upload_id is not None
        self._in_flight.add(
            asyncio.create_task(
                self.dst.storage.upload_part(
                    self.dst.bucket, self.key, self._upload_id, number, data
                )
            )
        )

    async def finish(self) -> str | None:
        if self._upload_id is None:
            body = self._first or b""
            self._first = None
            self.size = len(body)
            self._digests = [hashlib.md5(body, usedforsecurity=False).digest()]
            result = await self.dst.storage.put(
                self.dst.bucket, self.key, body, meta=self.meta, size=len(body)
            )
            return result.etag
        self._parts.extend(await asyncio.gather(*self._in_flight))
        self._in_flight = set()
        self._parts.sort(key=lambda p: p.part_number)
        result = await self.dst.storage.complete_upload(
            self.dst.bucket, self.key, self._upload_id, self._parts
        )
        self._upload_id = None
        return result.etag

    def expected_etag(self) -> str:
        if len(self._digests) == 1 and not self._parts:
            return self._digests[0].hex()
        joined = hashlib.md5(b"".join(self._digests), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self._digests)}"

    async def abort(self) -> None:
        for t in self._in_flight:
            t.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight = set()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                await self.dst.storage.abort_upload(self.dst.bucket, self.key, self._upload_id)
