"""Blocking object writes of the local driver: new objects, copies, installing a temp file.

Runs in the driver's I/O threads. Paths are plain strings and files raw descriptors: on
a small object pathlib's joins and buffered file objects cost more than the syscalls, and
every call that releases the GIL is another hand-off the thread waits for while the event
loop holds it, so each object gets as few syscalls as its write needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Sequence
from typing import Any

from objectjobs.errors import BucketNotFound, ObjectNotFound, StorageError
from objectjobs.storage import local_files as lf
from objectjobs.storage.interface import CopyRequest, ObjectMeta, WriteResult

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_MAX_CHECKED_BUCKETS = 10_000


class LocalPaths:
    """Where one root keeps objects, sidecars and temp files."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.meta = f"{root}/{lf.META_DIR}"
        self.tmp = f"{self.meta}/tmp"
        self._valid_buckets: set[str] = set()  # names that passed the check (a regex)

    def bucket_dir(self, bucket: str) -> str:
        if bucket not in self._valid_buckets:
            lf.check_bucket_name(bucket)
            if len(self._valid_buckets) > _MAX_CHECKED_BUCKETS:
                self._valid_buckets.clear()
            self._valid_buckets.add(bucket)
        return f"{self.root}/{bucket}"

    def file(self, bucket: str, key: str) -> str:
        """An object's file path, validated but not looked up (the bucket's existence is
        checked only when something fails: see ``missing``)."""
        d = self.bucket_dir(bucket)
        lf.check_key(key)
        return f"{d}/{key}"

    def sidecar(self, bucket: str, key: str) -> str:
        return f"{self.meta}/{bucket}/meta/{key}.json"

    def missing(self, bucket: str, key: str) -> StorageError:
        if not os.path.isdir(f"{self.root}/{bucket}"):
            return BucketNotFound(f"bucket {bucket!r} not found")
        return ObjectNotFound(f"{bucket}/{key} not found")

    def tmp_file(self) -> str:
        return lf.tmp_name(self.tmp)


def check_version(version_id: str | None, key: str) -> None:
    # the local driver keeps one version per key, which S3 would call "null"
    if version_id not in (None, "null"):
        raise ObjectNotFound(f"{key!r} has no version {version_id!r}")


def install(
    paths: LocalPaths,
    tmp: str,
    bucket: str,
    key: str,
    etag: str,
    meta: dict[str, Any],
    tags: dict[str, str],
    st: os.stat_result | None = None,
    dest: str | None = None,
) -> None:
    """Move a finished temp file into place and record its sidecar. ``st``: the temp
    file's stat taken after its last write (a rename keeps size and mtime); ``dest``:
    ``paths.file(bucket, key)`` when the caller has it. The temp file is gone afterwards,
    whatever happens."""
    if dest is None:
        dest = paths.file(bucket, key)
    if st is None:
        try:
            st = os.stat(tmp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    place(paths, tmp, bucket, key, dest)
    record(paths, bucket, key, etag, st, meta, tags)


def place(paths: LocalPaths, tmp: str, bucket: str, key: str, dest: str) -> None:
    """Rename a finished temp file to ``dest``, making the key's directories if needed.
    The temp file is gone afterwards, whatever happens."""
    try:
        try:
            os.replace(tmp, dest)
        except FileNotFoundError:
            # the key's directories do not exist yet: made only then, since most
            # objects land in a directory that is already there
            if not os.path.isdir(f"{paths.root}/{bucket}"):
                raise BucketNotFound(f"bucket {bucket!r} not found") from None
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(tmp, dest)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, IsADirectoryError):
            raise StorageError(f"{key!r} is a directory prefix on the local driver") from e
        if isinstance(e, NotADirectoryError | FileExistsError):
            raise StorageError(f"{key!r} collides with an existing key's path: {e}") from e
        raise


def record(
    paths: LocalPaths,
    bucket: str,
    key: str,
    etag: str,
    st: os.stat_result,
    meta: dict[str, Any],
    tags: dict[str, str],
) -> None:
    """Write the sidecar of an object just put in place (``st``: its file's stat)."""
    sidecar = lf.sidecar_bytes(etag, st.st_size, st.st_mtime_ns, meta, tags)
    lf.write_atomic(paths.sidecar(bucket, key), sidecar, paths.tmp)


class _TempFile:
    """A fresh temp file path for the block to write; the file is removed if the block
    fails (on success the caller renames it into place). A class, not a generator
    context manager: it guards every local copy, where that costs a few per cent."""

    __slots__ = ("path",)

    def __init__(self, paths: LocalPaths) -> None:
        self.path = paths.tmp_file()

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def write_new(
    paths: LocalPaths, bucket: str, key: str, data: bytes, meta: ObjectMeta | None
) -> str:
    """Write a whole small body: the file, its rename and sidecar in one thread hop."""
    dest = paths.file(bucket, key)  # validates before writing
    with _TempFile(paths) as tmp:
        fd = os.open(tmp, _O_NEW, 0o666)
        try:
            lf.write_all(fd, data)
            st = os.fstat(fd)  # size and mtime final: recorded in the sidecar
        finally:
            os.close(fd)
    etag = f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'
    tags = dict(meta.tags or {}) if meta else {}
    install(paths, tmp, bucket, key, etag, lf.meta_to_json(meta), tags, st, dest)
    return etag


def copy_object(
    paths: LocalPaths,
    src_bucket: str,
    dst_bucket: str,
    req: CopyRequest,
    sidecar_dirs: dict[str, bool] | None = None,
) -> WriteResult:
    """The whole copy in one thread hop: read the source once (hashing it when its sidecar
    does not vouch for an etag), write a temp file, rename it into place. The result
    carries the size written, so verifying the copy needs no HEAD. ``sidecar_dirs``:
    whether the source's sidecar directories exist, as found so far by a batch.

    The hot path of a local→local replication, per object: the Python between its dozen
    syscalls is kept below their cost (the batch holds the GIL for it, and the event
    loop waits)."""
    src_key = req.src_key
    if req.src_version_id is not None:
        check_version(req.src_version_id, src_key)
    src = paths.file(src_bucket, src_key)
    if req.dst_key == src_key:
        dest = f"{paths.bucket_dir(dst_bucket)}/{src_key}"  # the key is checked already
    else:
        dest = paths.file(dst_bucket, req.dst_key)  # validates before writing
    sc_path = paths.sidecar(src_bucket, src_key)
    sc = lf.read_sidecar(sc_path) if _may_have_sidecar(sc_path, sidecar_dirs) else None
    try:
        fd_in = os.open(src, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        raise paths.missing(src_bucket, src_key) from None
    with _TempFile(paths) as tmp:
        try:
            st_src = os.fstat(fd_in)
            if not stat.S_ISREG(st_src.st_mode):  # a directory opens fine read-only
                raise ObjectNotFound(f"{src_bucket}/{src_key} not found")
            etag = sc.etag if sc is not None and sc.matches(st_src) else None
            fd_out = os.open(tmp, _O_NEW, 0o666)
            try:
                if etag is None:
                    etag = _hash_copy(fd_in, fd_out, st_src.st_size)
                    st = os.fstat(fd_out)
                else:
                    _kernel_copy(fd_in, fd_out)
                    st, now = os.fstat(fd_out), os.fstat(fd_in)
                    if (st.st_size, now.st_size, now.st_mtime_ns) != (
                        st_src.st_size,
                        st_src.st_size,
                        st_src.st_mtime_ns,
                    ):
                        # written to while copied: the sidecar's etag is not of what was
                        # copied, so it is taken from the copy (and will not verify)
                        etag = lf.md5_file(tmp)
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
    meta = req.meta
    if sc is None and meta is None:
        # a file some other tool wrote (no sidecar) is copied as one: the copy gets no
        # sidecar either, and its ETag is computed when first asked, as the source's is.
        # One file created per copy instead of two, and no sidecar to write; identity
        # (replication.identical) falls back to size and mtime, as for the source
        place(paths, tmp, dst_bucket, req.dst_key, dest)
        _drop_sidecar(paths.sidecar(dst_bucket, req.dst_key), sidecar_dirs)
        return WriteResult(etag=etag, version_id=None, size=st.st_size)
    if meta is None:
        new_meta = sc.meta if sc else {}
        tags = sc.tags if sc else {}
    else:
        # like S3: metadata replaced; tags copied unless new ones are given
        new_meta = lf.meta_to_json(meta)
        tags = dict(meta.tags) if meta.tags is not None else (sc.tags if sc else {})
    install(paths, tmp, dst_bucket, req.dst_key, etag, new_meta, tags, st, dest)
    if sidecar_dirs is not None:  # its sidecar's directory exists now, whatever was found
        sidecar_dirs[_parent(paths.sidecar(dst_bucket, req.dst_key))] = True
    return WriteResult(etag=etag, version_id=None, size=st.st_size)


def _parent(path: str) -> str:
    return path[: path.rfind("/")]


def _may_have_sidecar(path: str, sidecar_dirs: dict[str, bool] | None) -> bool:
    """False when the sidecar's directory is known (by the batch's ``sidecar_dirs``) not to
    exist. Files written by other tools have no sidecar directory at all: one stat per
    directory of a batch instead of a failed open per file."""
    if sidecar_dirs is None:
        return True
    d = _parent(path)
    there = sidecar_dirs.get(d)
    if there is None:
        there = sidecar_dirs[d] = os.path.isdir(d)
    return there


def _drop_sidecar(path: str, sidecar_dirs: dict[str, bool] | None) -> None:
    """Remove a replaced object's sidecar: it describes the old file, and its metadata
    would otherwise outlive it. Rename first, then this: a crash between them leaves what
    a crash between a rename and its sidecar's write leaves, old metadata by a new body."""
    if _may_have_sidecar(path, sidecar_dirs):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(path)


def copy_many(
    paths: LocalPaths, src_bucket: str, dst_bucket: str, items: Sequence[CopyRequest]
) -> list[WriteResult | StorageError]:
    out: list[WriteResult | StorageError] = []
    sidecar_dirs: dict[str, bool] = {}
    for req in items:
        try:
            out.append(copy_object(paths, src_bucket, dst_bucket, req, sidecar_dirs))
        except StorageError as e:
            out.append(e)
        except OSError as e:  # one object's failure (a full disk, a name too long), not the batch's
            out.append(lf.os_error(e, req.dst_key))
    return out


def _hash_copy(fd_in: int, fd_out: int, size: int) -> str:
    """Copy the ``size`` bytes the file had when opened (less if it shrank since) through
    user space, hashing them; the quoted MD5. Like a copy made at the stat: bytes appended
    since are left for the next copy, and no read is spent on finding the end."""
    if size <= lf.CHUNK:
        # most files: one read, one write (a short write is finished by write_all)
        chunk = os.read(fd_in, size) if size else b""
        if chunk and (n := os.write(fd_out, chunk)) != len(chunk):
            lf.write_all(fd_out, memoryview(chunk)[n:])
        return f'"{hashlib.md5(chunk, usedforsecurity=False).hexdigest()}"'
    h = hashlib.md5(usedforsecurity=False)
    left = size
    # os.read(fd, n) allocates n bytes before reading: never more than is left
    while left > 0 and (chunk := os.read(fd_in, min(lf.CHUNK, left))):
        h.update(chunk)
        lf.write_all(fd_out, chunk)
        left -= len(chunk)
    return f'"{h.hexdigest()}"'


def _kernel_copy(fd_in: int, fd_out: int) -> None:
    """Copy in the kernel (no pass through Python; a reflink where the filesystem can)."""
    try:
        while os.copy_file_range(fd_in, fd_out, 8 * lf.CHUNK):
            pass
    except OSError:  # not across these filesystems: through user space from here on
        while chunk := os.read(fd_in, lf.CHUNK):
            lf.write_all(fd_out, chunk)
