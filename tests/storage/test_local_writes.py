"""How the local driver puts new bodies in place: each write leaves only its key behind
(no temp file, whether it succeeds or fails), a replaced key takes the new body's
metadata, and a file another tool wrote is copied as such a file (no sidecar)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from objectjobs.errors import BucketNotFound, StorageError
from objectjobs.storage import local_write
from objectjobs.storage.interface import CopyRequest, ObjectMeta, WriteResult
from objectjobs.storage.local import LocalStorage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "root")


def names_on_disk(root: Path) -> set[str]:
    """Every file under the root but the sidecars: objects, and any temp file left."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if "/meta/" not in rel:
                out.add(rel)
    return out


def md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


async def test_puts_and_copies_leave_only_their_keys(storage: LocalStorage) -> None:
    root = storage.root
    await storage.create_bucket("aaa")
    await storage.create_bucket("bbb")
    await storage.put("aaa", "k", b"one")
    await storage.put("aaa", "deep/er/k", b"two")  # directories made on the way
    (root / "aaa" / "plain").write_bytes(b"foreign")
    got = await storage.copy_many(
        "aaa",
        "bbb",
        [CopyRequest("k", "k"), CopyRequest("deep/er/k", "x/y"), CopyRequest("plain", "p")],
    )
    assert [r.etag for r in got if isinstance(r, WriteResult)] == [
        md5(b"one"),
        md5(b"two"),
        md5(b"foreign"),
    ]
    assert names_on_disk(root) == {
        "aaa/k",
        "aaa/deep/er/k",
        "aaa/plain",
        "bbb/k",
        "bbb/x/y",
        "bbb/p",
    }
    assert (root / "bbb" / "x" / "y").read_bytes() == b"two"
    # a copy of an object with a sidecar gets one; a copy of a plain file stays plain
    sidecars = root / ".objectjobs" / "bbb" / "meta"
    assert (sidecars / "k.json").exists() and not (sidecars / "p.json").exists()
    assert (await storage.head("bbb", "p")).etag == md5(b"foreign")
    assert os.listdir(root / ".objectjobs" / "tmp") == []


async def test_a_replaced_key_gets_the_new_body_and_metadata(storage: LocalStorage) -> None:
    root = storage.root
    await storage.create_bucket("bk")
    await storage.put("bk", "k", b"old", meta=ObjectMeta(content_type="text/old", tags={"t": "1"}))
    await storage.put("bk", "src", b"new", meta=ObjectMeta(content_type="text/new"))
    await storage.copy("bk", "src", "bk", "k")
    info = await storage.head("bk", "k")
    assert (info.etag, info.meta.content_type, info.meta.tags) == (md5(b"new"), "text/new", {})
    # replaced by a file another tool wrote: the old sidecar does not lend it its metadata
    (root / "bk" / "plain").write_bytes(b"plain body")
    await storage.put("bk", "k2", b"old", meta=ObjectMeta(content_type="text/old"))
    await storage.copy("bk", "plain", "bk", "k2")
    info = await storage.head("bk", "k2")
    assert (info.etag, info.meta.content_type) == (md5(b"plain body"), None)
    assert (root / "bk" / "k2").read_bytes() == b"plain body"
    assert names_on_disk(root) == {"bk/k", "bk/src", "bk/plain", "bk/k2"}
    assert os.listdir(root / ".objectjobs" / "tmp") == []


async def test_a_failed_copy_leaves_nothing(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = storage.root
    await storage.create_bucket("bk")
    (root / "bk" / "plain").write_bytes(b"x" * 100)
    await storage.put("bk", "file", b"a file where a directory would be needed")

    def broken(fd_in: int, fd_out: int, size: int) -> str:
        os.write(fd_out, b"half")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(local_write, "_hash_copy", broken)
    [failed] = await storage.copy_many("bk", "bk", [CopyRequest("plain", "new")])
    assert isinstance(failed, StorageError)
    monkeypatch.undo()
    [collides] = await storage.copy_many("bk", "bk", [CopyRequest("plain", "file/below")])
    assert isinstance(collides, StorageError) and "collides" in collides.message
    with pytest.raises(BucketNotFound):
        await storage.copy("bk", "plain", "nobucket", "k")
    assert names_on_disk(root) == {"bk/plain", "bk/file"}
    assert os.listdir(root / ".objectjobs" / "tmp") == []


async def test_a_key_that_is_a_directory_prefix_is_refused(storage: LocalStorage) -> None:
    await storage.create_bucket("bk")
    await storage.put("bk", "dir/below", b"makes dir a directory")
    with pytest.raises(StorageError, match="directory prefix"):
        await storage.put("bk", "dir", b"x")
    assert names_on_disk(storage.root) == {"bk/dir/below"}
    assert os.listdir(storage.root / ".objectjobs" / "tmp") == []


async def test_a_batch_that_writes_a_sidecar_then_replaces_its_key_drops_it(
    storage: LocalStorage,
) -> None:
    """Within one batch: a plain copy finds no sidecar directory at the target, a copy with
    metadata then makes it, and a plain copy over that same key must still drop the
    sidecar the batch itself wrote (it would lend the plain body its metadata)."""
    root = storage.root
    await storage.create_bucket("bk")
    (root / "bk" / "plain").write_bytes(b"plain body")
    await storage.put("bk", "meta", b"with metadata", meta=ObjectMeta(content_type="text/x"))
    got = await storage.copy_many(
        "bk",
        "bk",
        [CopyRequest("plain", "d/a"), CopyRequest("meta", "d/b"), CopyRequest("plain", "d/b")],
    )
    assert all(isinstance(r, WriteResult) for r in got)
    info = await storage.head("bk", "d/b")
    assert (info.etag, info.meta.content_type) == (md5(b"plain body"), None)
