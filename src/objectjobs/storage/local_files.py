"""Blocking file-level helpers of the local driver: paths, sidecars and the sorted walk.

Everything here is synchronous and runs in worker threads (``asyncio.to_thread``); the
async driver in ``local.py`` only batches calls into it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from objectjobs.errors import AccessDenied, BucketNotFound, StorageError, TransientStorageError
from objectjobs.storage.interface import ObjectMeta, ObjectVersion
from objectjobs.storage.key_splits import in_scope

META_DIR = ".objectjobs"
CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
# temp file names: the pid tells processes (and a forked child) apart, the token two runs
# that got the same pid, the counter the files of one process (uuid4 cost a getrandom
# syscall and an object per file written)
_TMP_TOKEN = os.urandom(4).hex()
_tmp_seq = itertools.count()
_pid = os.getpid()  # getpid is a syscall: kept, and renewed in a forked child


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def tmp_name(tmp_dir: str | os.PathLike[str]) -> str:
    """A fresh temp file path in ``tmp_dir`` (unique among every process using the root)."""
    return f"{os.fspath(tmp_dir)}/{_pid}-{_TMP_TOKEN}-{next(_tmp_seq)}"


#: the file system may get better: space freed, a device back, descriptors released
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.EINTR,
    }
)
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def os_error(exc: OSError, key: str | None = None) -> StorageError:
    """An OSError no driver code expected, as one of our storage errors: permissions and a
    read-only file system are AccessDenied, a full disk or an I/O error may pass (retried),
    anything else (a name too long for the file system, ...) is permanent. The message
    names the key, not the path: paths are the driver's own business."""
    name = errno.errorcode.get(exc.errno or 0, "")
    reason = f"{exc.strerror or exc}" + (f" ({name})" if name else "")
    if exc.errno == errno.ENAMETOOLONG:
        reason += ": a path component of the key is longer than the file system allows"
    text = f"{key!r}: {reason}" if key is not None else f"local storage: {reason}"
    if exc.errno in _DENIED_ERRNOS:
        return AccessDenied(text)
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientStorageError(text)
    return StorageError(text)


def check_bucket_name(bucket: str) -> None:
    # a bucket name becomes a directory name: refuse anything that could escape the root
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise StorageError(f"invalid bucket name for the local driver: {bucket!r}")


def check_key(key: str) -> None:
    """Refuse keys that cannot be a file path below the bucket (or would escape it)."""
    if not key or "\0" in key or key.startswith("/") or key.endswith("/"):
        raise StorageError(f"key not representable by the local driver: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StorageError(f"key not representable by the local driver: {key!r}")
    if len(key.encode("utf-8", "surrogateescape")) > 1024:
        raise StorageError("key longer than 1024 bytes")


def utc_from_ns(ns: int) -> datetime:
    # Whole microseconds as a float are exact until 2106 (2**32 s in a 53-bit mantissa), so
    # this rounds to the right microsecond, at half the cost of epoch + timedelta (it shows
    # in listings of many files).
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC)


class FileVersion(ObjectVersion):
    """A file's listing entry, whose ``last_modified`` is made from the file's mtime (ns
    since the epoch) when first read: a count never reads it, and making a datetime per
    file was ~9% of a walk's CPU (200,000 files: 1.56 against 1.72 CPU s, five rounds).
    Built like an ObjectVersion, ``last_modified`` a datetime or those nanoseconds."""

    __slots__ = ("_mtime",)

    def __init__(
        self,
        key: str,
        version_id: str | None,
        is_latest: bool,
        is_delete_marker: bool,
        size: int,
        etag: str | None,
        last_modified: datetime | int,
        storage_class: str = "STANDARD",
    ) -> None:
        self.key = key
        self.version_id = version_id
        self.is_latest = is_latest
        self.is_delete_marker = is_delete_marker
        self.size = size
        self.etag = etag
        self._mtime = last_modified
        self.storage_class = storage_class

    @property
    def last_modified(self) -> datetime:
        mtime = self._mtime
        if isinstance(mtime, int):
            mtime = self._mtime = utc_from_ns(mtime)
        return mtime

    @last_modified.setter
    def last_modified(self, value: datetime) -> None:
        self._mtime = value


def md5_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f'"{h.hexdigest()}"'


def multipart_etag(part_etags: list[str]) -> str:
    joined = b"".join(bytes.fromhex(e.strip('"')) for e in part_etags)
    return f'"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_etags)}"'


# --- object metadata sidecars ---------------------------------------------------------------


def meta_to_json(meta: ObjectMeta | None) -> dict[str, Any]:
    if meta is None:
        return {}
    out: dict[str, Any] = {
        k: getattr(meta, k)
        for k in (
            "content_type",
            "content_encoding",
            "content_language",
            "content_disposition",
            "cache_control",
        )
        if getattr(meta, k) is not None
    }
    if meta.expires is not None:
        out["expires"] = meta.expires.isoformat()
    if meta.metadata:
        out["metadata"] = dict(meta.metadata)
    return out


def meta_from_json(data: dict[str, Any], tags: dict[str, str] | None) -> ObjectMeta:
    expires = data.get("expires")
    return ObjectMeta(
        content_type=data.get("content_type"),
        content_encoding=data.get("content_encoding"),
        content_language=data.get("content_language"),
        content_disposition=data.get("content_disposition"),
        cache_control=data.get("cache_control"),
        expires=datetime.fromisoformat(expires) if expires else None,
        metadata=dict(data.get("metadata", {})),
        tags=tags,
    )


@dataclass(frozen=True)
class Sidecar:
    """What the driver recorded about one object when it wrote it.

    Valid only while the file's size and mtime still match: a file rewritten by another
    tool keeps a stale sidecar, whose etag must then not be trusted (its metadata is kept).
    """

    etag: str | None
    size: int
    mtime_ns: int
    meta: dict[str, Any]
    tags: dict[str, str]

    def matches(self, st: os.stat_result) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns

    def to_bytes(self) -> bytes:
        return sidecar_bytes(self.etag, self.size, self.mtime_ns, self.meta, self.tags)


def sidecar_bytes(
    etag: str | None, size: int, mtime_ns: int, meta: dict[str, Any], tags: dict[str, str]
) -> bytes:
    """A sidecar's JSON (``Sidecar.to_bytes``), from its fields: a new object's sidecar is
    written without building the frozen Sidecar, which cost more than the encoding."""
    if not meta and not tags and isinstance(etag, str):
        # what the encoder writes for the common sidecar (an object without metadata),
        # at a fraction of its cost; the test suite checks the two agree
        return (
            f'{{"etag":{encode_basestring_ascii(etag)},"size":{int(size)},'
            f'"mtime_ns":{int(mtime_ns)},"meta":{{}},"tags":{{}}}}'
        ).encode()
    return _ENCODER.encode(
        {"etag": etag, "size": size, "mtime_ns": mtime_ns, "meta": meta, "tags": tags}
    ).encode()


# json.dumps with any option builds a new encoder per call
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_SIDECAR_READ = 1 << 16
_SIDECAR_MAX = 1 << 20


def _read_sidecar_dict(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        # os.read(fd, n) allocates n bytes first: 1 MiB a read cost a listing ~30 us of CPU
        # per object (a third of it); a sidecar is rarely over 64 KiB
        raw = os.read(fd, _SIDECAR_READ)
        if len(raw) == _SIDECAR_READ:
            raw += os.read(fd, _SIDECAR_MAX - _SIDECAR_READ)
    finally:
        os.close(fd)
    try:
        # decoded here: json.loads of bytes first sniffs their encoding (we write ASCII)
        d = json.loads(raw.decode())
    except ValueError:  # UnicodeDecodeError too
        return None
    return d if isinstance(d, dict) else None


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar | None:
    d = _read_sidecar_dict(path)
    if d is None:
        return None
    try:
        return Sidecar(
            d.get("etag"), d["size"], d["mtime_ns"], d.get("meta", {}), d.get("tags", {})
        )
    except KeyError:
        return None  # a damaged sidecar is as good as none: etag recomputed on head


def sidecar_etag(path: str, st: os.stat_result) -> str | None:
    """The etag a sidecar vouches for while it matches ``st`` (what a listing needs,
    without building a :class:`Sidecar`)."""
    d = _read_sidecar_dict(path)
    if d is None or d.get("size") != st.st_size or d.get("mtime_ns") != st.st_mtime_ns:
        return None
    etag = d.get("etag")
    return etag if isinstance(etag, str) else None


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(
    path: str | os.PathLike[str], data: bytes, tmp_dir: str | os.PathLike[str]
) -> None:
    tmp = tmp_name(tmp_dir)
    try:
        # raw descriptors: a buffered file object costs more to build than this write
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            # parent directories made only when missing: one syscall less per write
            os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove_empty_dirs(start: Path, stop: Path) -> None:
    """Remove now-empty directories from ``start`` up to (not including) ``stop``."""
    d = start
    while d != stop and stop in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


# --- the sorted walk ---------------------------------------------------------------------


def walk_sorted(
    bucket_dir: Path,
    meta_dir: Path,
    *,
    prefix: str,
    start_after: str,
    end_key: str | None,
    etags: bool = True,
    batch: int = 1000,
) -> Iterator[list[ObjectVersion]]:
    """The bucket's files as current objects in S3 key order, in lists of at most
    ``batch`` consecutive files of one directory; with ``etags``, each with the etag its
    sidecar vouches for (else None).

    S3 orders whole keys, not path components: "a-b" < "a/b" < "a0" because '-' < '/' < '0'.
    Within one directory the subtree of "x" holds exactly the keys starting with "x/", and no
    sibling's name contains '/', so sorting siblings by ``name + "/"`` for directories (and
    ``name`` for files) and recursing yields global key order. Subtrees wholly outside
    prefix / start_after / end_key are never opened.
    """
    if not bucket_dir.is_dir():
        raise BucketNotFound(f"bucket {bucket_dir.name!r} not found")
    # meta_dir None: sidecars not read
    meta = str(meta_dir) if etags else None
    yield from _walk(str(bucket_dir), meta, "", prefix, start_after, end_key, max(1, batch))


def _entries(directory: str | int) -> Iterator[tuple[str, bool]]:
    """(name, is a directory) of the files and subdirectories in ``directory`` (a path or
    an open descriptor) whose names a key can hold, in directory order."""
    with os.scandir(directory) as it:
        for e in it:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
                if not is_dir and not e.is_file(follow_symlinks=False):
                    continue
            except OSError:
                continue
            name = e.name
            if name.isascii() or _is_utf8(name):
                yield name, is_dir


def dir_entries(directory: str, base: str) -> list[str]:
    """The sort keys of the objects and subdirectories directly in ``directory`` (whose
    keys start with ``base``), a subdirectory's ending in "/"; [] if it is gone."""
    try:
        return [f"{base}{n}/" if d else base + n for n, d in _entries(directory)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_utf8(name: str) -> bool:
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # undecodable file name: not a key S3 could name
    return True


def _walk(
    directory: str,
    meta_dir: str | None,
    base: str,
    prefix: str,
    start_after: str,
    end_key: str | None,
    batch: int,
) -> Iterator[list[ObjectVersion]]:
    # The hot loop of every local listing: per entry it costs about as much as the stat
    # itself, so it avoids calls it can (the filter when there is none, Path objects, a
    # generator step per file: files are handed on in lists).
    filtered = bool(prefix or start_after)
    # Files are stat'ed relative to an open descriptor of their directory (fstatat): the
    # kernel then resolves one name, not the whole path, ~1 us less per file. One
    # descriptor per walk: it is closed while a subdirectory is walked, reopened after.
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        # name (a directory's with "/": its sort key below ``base``) -> is a directory.
        # Names, not DirEntry objects: e.stat() caches its result in the entry, and a
        # directory's worth of live entries and stat results cost ~3 us per file more
        # (memory touched instead of reused), measured on 200,000 files.
        found: dict[str, bool] = {}
        try:
            for name, is_dir in _entries(fd):
                if is_dir:
                    name += "/"
                if not filtered or in_scope(base + name, is_dir, prefix, start_after):
                    found[name] = is_dir
        except FileNotFoundError:
            return
        # which files have sidecars: one scandir instead of a failed open per foreign file
        sidecars: set[str] | None = set() if meta_dir is None else None
        out: list[ObjectVersion] = []
        stat, version = os.stat, FileVersion
        # siblings' sort keys share ``base``: sorting the names alone orders them the same
        for name in sorted(found):
            sort_key = base + name
            if end_key is not None and sort_key > end_key:
                break
            if found[name]:
                if out:
                    yield out
                    out = []
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                sub = name[:-1]
                sub_meta = None if meta_dir is None else f"{meta_dir}/{sub}"
                # a subtree wholly inside the prefix, or wholly after start_after, needs
                # that filter no more: its entries skip the check
                yield from _walk(
                    f"{directory}/{sub}",
                    sub_meta,
                    sort_key,
                    "" if sort_key.startswith(prefix) else prefix,
                    "" if sort_key > start_after else start_after,
                    end_key,
                    batch,
                )
                continue
            if fd < 0:
                try:
                    fd = os.open(directory, _DIR_FLAGS)
                except FileNotFoundError:
                    break  # removed while listing, with the files left in it
            try:
                st = stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue  # deleted while listing
            if sidecars is None:
                try:
                    with os.scandir(meta_dir) as it:
                        sidecars = {m.name for m in it}
                except (FileNotFoundError, NotADirectoryError):
                    sidecars = set()
            etag = None
            if sidecars:
                sidecar_name = name + ".json"
                if sidecar_name in sidecars:
                    etag = sidecar_etag(f"{meta_dir}/{sidecar_name}", st)
            out.append(version(sort_key, None, True, False, st.st_size, etag, st.st_mtime_ns))
            if len(out) >= batch:
                yield out
                out = []
        if out:
            yield out
    finally:
        if fd >= 0:
            os.close(fd)
