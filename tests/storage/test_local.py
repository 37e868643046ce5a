"""What only the local driver has: its on-disk layout (SPEC §5.2) and path safety."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from objectjobs.cli.common import build_settings
from objectjobs.errors import ConfigurationError, StorageError
from objectjobs.storage import local_files as lf
from objectjobs.storage import local_write
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import CopyRequest, ObjectVersion, WriteResult
from objectjobs.storage.local import LocalStorage
from tests.storage.helpers import collect


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


async def test_layout_is_plain_files(root: Path) -> None:
    s = LocalStorage(root)
    await s.create_bucket("docs")
    await s.put("docs", "a/b/c.txt", b"hello")
    assert (root / "docs" / "a" / "b" / "c.txt").read_bytes() == b"hello"
    config = {"Rules": [{"ID": "r", "Status": "Enabled", "Expiration": {"Days": 1}}]}
    await s.put_bucket_config("docs", "lifecycle", config)
    assert json.loads((root / ".objectjobs" / "docs" / "lifecycle.json").read_text()) == config
    assert await s.list_buckets() == ["docs"]  # .objectjobs is not a bucket
    await s.delete("docs", "a/b/c.txt")
    assert not (root / "docs" / "a").exists()  # emptied directories go too


async def test_files_written_by_other_tools(root: Path) -> None:
    s = LocalStorage(root)
    await s.create_bucket("ext")
    await s.put("ext", "mine", b"1")
    (root / "ext" / "sub").mkdir()
    (root / "ext" / "sub" / "theirs").write_bytes(b"foreign")
    listed = {o.key: o for o in await collect(s.list_objects("ext"))}  # type: ignore[attr-defined]
    assert listed["mine"].etag == f'"{hashlib.md5(b"1").hexdigest()}"'
    assert listed["sub/theirs"].etag is None  # unknown until computed: no MD5 at list time
    info = await s.head("ext", "sub/theirs")
    assert info.etag == f'"{hashlib.md5(b"foreign").hexdigest()}"'
    # a file rewritten behind the driver's back: the cached etag is no longer trusted
    path = root / "ext" / "mine"
    path.write_bytes(b"22")
    os.utime(path, ns=(1, 1_000_000_000))
    listed = {o.key: o for o in await collect(s.list_objects("ext"))}  # type: ignore[attr-defined]
    assert listed["mine"].etag is None
    assert (await s.head("ext", "mine")).etag == f'"{hashlib.md5(b"22").hexdigest()}"'


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "nul\0", "dir/", "."])
async def test_keys_that_could_escape_are_refused(root: Path, key: str) -> None:
    s = LocalStorage(root)
    await s.create_bucket("safe")
    with pytest.raises(StorageError):
        await s.put("safe", key, b"x")
    with pytest.raises(StorageError):
        await s.head("safe", key)
    assert not (root.parent / "escape").exists()


@pytest.mark.parametrize("bucket", ["..", ".objectjobs", "a/b", "UPPER", ""])
async def test_bad_bucket_names_are_refused(root: Path, bucket: str) -> None:
    s = LocalStorage(root)
    with pytest.raises(StorageError):
        await s.create_bucket(bucket)


async def test_key_and_prefix_collision(root: Path) -> None:
    s = LocalStorage(root)
    await s.create_bucket("coll")
    await s.put("coll", "x", b"file")
    with pytest.raises(StorageError):
        await s.put("coll", "x/y", b"below a file")
    assert (root / "coll" / "x").read_bytes() == b"file"


async def test_copy_of_a_foreign_file_hashes_it_once_and_leaves_the_source_alone(
    root: Path,
) -> None:
    s = LocalStorage(root)
    await s.create_bucket("src")
    await s.create_bucket("dst")
    (root / "src" / "d").mkdir()
    (root / "src" / "d" / "theirs").write_bytes(b"foreign")
    result = await s.copy("src", "d/theirs", "dst", "x/y/copy")
    md5 = f'"{hashlib.md5(b"foreign").hexdigest()}"'
    assert (result.etag, result.size) == (md5, 7)
    assert (root / "dst" / "x" / "y" / "copy").read_bytes() == b"foreign"
    # the copy stays a plain file like its source: no sidecar on either side, and its
    # ETag is computed when asked
    listed = [(o.key, o.etag) async for page in s.list_objects("dst") for o in page]
    assert listed == [("x/y/copy", None)]
    assert not (root / ".objectjobs" / "src").exists()
    assert not (root / ".objectjobs" / "dst").exists()
    assert (await s.head("dst", "x/y/copy")).etag == md5
    # a source changed behind the driver's back is hashed again, not trusted
    await s.head("src", "d/theirs")  # caches the sidecar
    path = root / "src" / "d" / "theirs"
    path.write_bytes(b"changed!")
    os.utime(path, ns=(1, 1_000_000_000))
    result = await s.copy("src", "d/theirs", "dst", "x/y/copy")
    assert result.etag == f'"{hashlib.md5(b"changed!").hexdigest()}"'
    assert (root / "dst" / "x" / "y" / "copy").read_bytes() == b"changed!"


async def test_copy_many_is_one_thread_hop_and_leaves_no_temp_files(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = LocalStorage(root)
    await s.create_bucket("src")
    await s.create_bucket("dst")
    for i in range(20):
        await s.put("src", f"k{i:02d}", bytes([i]) * i)
    await s.put("dst", "k05/below", b"makes k05 a directory on the target")
    hops = 0
    io = s._io

    async def counted(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await io(fn, *args, **kwargs)

    monkeypatch.setattr(s, "_io", counted)
    got = await s.copy_many(
        "src", "dst", [CopyRequest(f"k{i:02d}", f"k{i:02d}") for i in range(20)]
    )
    assert hops == 1
    assert isinstance(got[5], StorageError) and "directory prefix" in got[5].message
    for i, r in enumerate(got):
        if i != 5:
            assert isinstance(r, WriteResult) and r.size == i
            assert (root / "dst" / f"k{i:02d}").read_bytes() == bytes([i]) * i
    assert list((root / ".objectjobs" / "tmp").iterdir()) == []


async def test_copy_of_a_file_written_while_copied_takes_the_etag_of_the_copy(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = LocalStorage(root)
    await s.create_bucket("bk")
    await s.put("bk", "src", b"before")  # its sidecar vouches for the MD5 of "before"
    kernel_copy = local_write._kernel_copy

    def written_meanwhile(fd_in: int, fd_out: int) -> None:
        # another tool writes the file after the driver matched it with its sidecar
        (root / "bk" / "src").write_bytes(b"AFTER!")
        kernel_copy(fd_in, fd_out)

    monkeypatch.setattr(local_write, "_kernel_copy", written_meanwhile)
    result = await s.copy("bk", "src", "bk", "dst")
    assert (root / "bk" / "dst").read_bytes() == b"AFTER!"
    # the etag is of what was copied, not the sidecar's: the copy then fails to verify
    # against the listed etag instead of passing for content it does not have
    assert (result.etag, result.size) == (f'"{hashlib.md5(b"AFTER!").hexdigest()}"', 6)
    assert (await s.head("bk", "dst")).etag == result.etag


async def test_copy_of_a_large_foreign_file_reads_it_in_chunks(root: Path) -> None:
    s = LocalStorage(root)
    await s.create_bucket("big")
    body = os.urandom(2 * lf.CHUNK + 3)
    (root / "big" / "theirs").write_bytes(body)
    result = await s.copy("big", "theirs", "big", "copy")
    assert (result.etag, result.size) == (f'"{hashlib.md5(body).hexdigest()}"', len(body))
    assert (root / "big" / "copy").read_bytes() == body


async def test_sized_listing_leaves_sidecars_unread(root: Path) -> None:
    s = LocalStorage(root)
    await s.create_bucket("sz")
    await s.put("sz", "a/mine", b"1" * 5)
    (root / "sz" / "a" / "theirs").write_bytes(b"22")
    full = await collect(s.list_versions("sz"))  # type: ignore[attr-defined]
    sized = await collect(s.list_versions_sized("sz"))  # type: ignore[attr-defined]
    assert [o.etag is None for o in full] == [False, True]
    assert [dataclasses.replace(o, etag=None) for o in full] == sized


@pytest.mark.parametrize(
    ("meta", "tags"),
    [({}, {}), ({"content_type": "text/plain"}, {}), ({}, {"t": "ü"}), ({"metadata": {}}, {})],
)
@pytest.mark.parametrize("etag", ['"0123456789abcdef0123456789abcdef"', '"x\\"y-2"', None])
def test_sidecar_bytes_are_the_json_encoders(
    meta: dict[str, Any], tags: dict[str, str], etag: str | None
) -> None:
    sc = lf.Sidecar(etag, 1024, 1_700_000_000_123_456_789, meta, tags)
    expected = {"etag": etag, "size": 1024, "mtime_ns": sc.mtime_ns, "meta": meta, "tags": tags}
    assert sc.to_bytes() == json.dumps(expected, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("meta", "tags"),
    [({}, {}), ({"content_type": "text/plain"}, {}), ({}, {"t": "ü"}), ({"metadata": {}}, {})],
)
@pytest.mark.parametrize("etag", ['"0123456789abcdef0123456789abcdef"', '"x\\"y-ü"'])
def test_a_written_objects_sidecar_is_the_sidecars_own_encoding(
    tmp_path: Path, meta: dict[str, Any], tags: dict[str, str], etag: str
) -> None:
    (tmp_path / "f").write_bytes(b"x" * 1024)
    st = os.stat(tmp_path / "f")
    sc = lf.Sidecar(etag, st.st_size, st.st_mtime_ns, meta, tags)
    assert lf.sidecar_bytes(etag, st.st_size, st.st_mtime_ns, meta, tags) == sc.to_bytes()


async def test_copy_of_a_small_file_finishes_a_short_write(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = LocalStorage(root)
    await s.create_bucket("sw")
    body = os.urandom(1000)
    (root / "sw" / "theirs").write_bytes(body)
    write = os.write

    def short(fd: int, data: Any) -> int:
        return write(fd, bytes(data)[:300])  # as a write interrupted by a signal may be

    monkeypatch.setattr(local_write.os, "write", short)
    result = await s.copy("sw", "theirs", "sw", "copy")
    monkeypatch.undo()
    assert (result.etag, result.size) == (f'"{hashlib.md5(body).hexdigest()}"', 1000)
    assert (root / "sw" / "copy").read_bytes() == body


@pytest.mark.parametrize(("env", "limit"), [(None, 1), ("3", 3)])
async def test_copy_batches_in_flight_are_limited_by_storage_copy_threads(
    root: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, limit: int
) -> None:
    if env is not None:
        monkeypatch.setenv("OBJECTJOBS_STORAGE__COPY_THREADS", env)
    s = open_storage(build_settings(None).storage, root=root)
    running = most = 0
    lock = threading.Lock()

    def slow_batch(*args: Any) -> list[Any]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return []

    monkeypatch.setattr(local_write, "copy_many", slow_batch)
    await asyncio.gather(*(s.copy_many("a1", "b1", []) for _ in range(8)))
    assert most == limit


@pytest.mark.parametrize("value", ["0", "many"])
def test_storage_copy_threads_must_be_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OBJECTJOBS_STORAGE__COPY_THREADS", value)
    with pytest.raises(ConfigurationError, match=r"storage\.copy_threads"):
        build_settings(None)


def test_walk_skips_a_file_removed_after_its_directory_was_read(root: Path) -> None:
    bucket = root / "w"
    (bucket / "d").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (bucket / "d" / name).write_bytes(name.encode() * 2)
    os.symlink(bucket / "d" / "a", bucket / "d" / "link")  # neither file nor directory
    walk = lf.walk_sorted(bucket, root / "meta", prefix="", start_after="", end_key=None, batch=1)
    # "d" has been read: its names are known, the stats after the first not yet taken
    [first] = next(walk)
    (bucket / "d" / "b").unlink()
    rest = [v for files in walk for v in files]
    assert [first.key, *(v.key for v in rest)] == ["d/a", "d/c"]
    st = os.lstat(bucket / "d" / "c")
    assert (rest[0].size, rest[0].last_modified) == (2, lf.utc_from_ns(st.st_mtime_ns))


def test_a_listed_file_reads_as_an_object_version_with_its_mtime(root: Path) -> None:
    bucket = root / "v"
    bucket.mkdir(parents=True)
    (bucket / "k").write_bytes(b"abc")
    os.utime(bucket / "k", ns=(0, 1_700_000_000_123_456_789))
    [[entry]] = list(lf.walk_sorted(bucket, root / "meta", prefix="", start_after="", end_key=None))
    when = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)  # whole microseconds
    expected = lf.FileVersion("k", None, True, False, 3, None, when)
    assert isinstance(entry, ObjectVersion)
    assert entry.last_modified == when and entry.last_modified is entry.last_modified
    assert entry == expected and dataclasses.asdict(entry) == dataclasses.asdict(expected)
    assert f"last_modified={when!r}" in repr(entry)
    moved = dataclasses.replace(entry, size=4)
    assert (type(moved), moved.size, moved.last_modified) == (lf.FileVersion, 4, when)
    later = datetime(2024, 1, 1, tzinfo=UTC)
    entry.last_modified = later
    assert entry.last_modified == later and entry != expected


def test_walk_holds_one_directory_descriptor_at_a_time_and_closes_it(root: Path) -> None:
    bucket = root / "fds"
    for key in ("d/a", "d/s/t/u/deep", "d/s/t/v", "d/z", "e"):
        (bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (bucket / key).write_bytes(b"x")

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    walk = lf.walk_sorted(bucket, root / "meta", prefix="", start_after="", end_key=None, batch=1)
    assert [next(walk)[0].key for _ in range(2)] == ["d/a", "d/s/t/u/deep"]
    assert open_fds() == before + 1  # the deepest directory's; its parents' are closed
    # parents reopened after
    assert [v.key for files in walk for v in files] == ["d/s/t/v", "d/z", "e"]
    assert open_fds() == before
    abandoned = lf.walk_sorted(
        bucket, root / "meta", prefix="", start_after="", end_key=None, batch=1
    )
    next(abandoned)
    abandoned.close()
    assert open_fds() == before
