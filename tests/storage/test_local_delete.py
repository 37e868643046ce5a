"""The local driver's batch delete: per-item results, and directories pruned once a batch
has emptied them (SPEC §5.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectjobs.errors import StorageError
from objectjobs.storage.local import LocalStorage


@pytest.fixture
async def store(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(tmp_path / "root")
    await s.create_bucket("bk")
    return s


async def keys(s: LocalStorage) -> list[str]:
    return [o.key async for page in s.list_objects("bk") for o in page]


async def test_batch_prunes_emptied_directories_and_keeps_the_rest(store: LocalStorage) -> None:
    for k in ("a/b/1", "a/b/2", "a/c/1", "a/keep", "x/y/z/1", "top"):
        await store.put("bk", k, b"v", meta=None)
    results = await store.delete_many(
        "bk", [("a/b/1", None), ("a/b/2", None), ("a/c/1", None), ("x/y/z/1", "null")]
    )
    assert [(r.key, r.error_code) for r in results] == [
        ("a/b/1", None),
        ("a/b/2", None),
        ("a/c/1", None),
        ("x/y/z/1", None),
    ]
    assert await keys(store) == ["a/keep", "top"]
    bucket, meta = store.root / "bk", store.root / ".objectjobs" / "bk" / "meta"
    for base in (bucket, meta):
        assert not (base / "a" / "b").exists() and not (base / "a" / "c").exists()
        assert not (base / "x").exists()
        assert (base / "a").is_dir()  # still holds a/keep (and its sidecar)
    assert not (meta / "a" / "b" / "1.json").exists()
    assert (meta / "a" / "keep.json").is_file()


async def test_batch_reports_each_item(store: LocalStorage) -> None:
    for k in ("d/1", "d/2", "kept"):
        await store.put("bk", k, b"v")
    results = await store.delete_many(
        "bk",
        [("d/1", None), ("../escape", None), ("kept", "v123"), ("ghost/k", None), ("d/2", None)],
    )
    assert [r.key for r in results] == ["d/1", "../escape", "kept", "ghost/k", "d/2"]
    assert [r.error_code for r in results] == [None, StorageError.code, None, None, None]
    # a version id the local driver never issued names nothing: the file stays
    assert await keys(store) == ["kept"]
    assert not (store.root / "bk" / "d").exists()


async def test_a_directory_at_the_key_path_is_not_an_object(store: LocalStorage) -> None:
    await store.put("bk", "p/child", b"v")
    [r] = await store.delete_many("bk", [("p", None)])
    assert r.error_code is None
    assert await keys(store) == ["p/child"]
    assert (await store.delete("bk", "p")).error_code is None
    assert await keys(store) == ["p/child"]


async def test_foreign_files_without_sidecars_are_deleted(store: LocalStorage) -> None:
    sub = store.root / "bk" / "ext" / "deep"
    sub.mkdir(parents=True)
    for name in ("1", "2"):
        (sub / name).write_bytes(b"foreign")
    results = await store.delete_many("bk", [("ext/deep/1", None), ("ext/deep/2", None)])
    assert all(r.error_code is None for r in results)
    assert not (store.root / "bk" / "ext").exists()


async def test_single_delete_refuses_an_unrepresentable_key(store: LocalStorage) -> None:
    with pytest.raises(StorageError):
        await store.delete("bk", "a//b")


async def test_a_symlink_at_the_key_path_goes_but_never_its_target(
    store: LocalStorage, tmp_path: Path
) -> None:
    target = tmp_path / "outside.txt"
    target.write_bytes(b"keep me")
    (store.root / "bk" / "ln").symlink_to(target)
    (store.root / "bk" / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    results = await store.delete_many("bk", [("ln", None), ("dirlink", None)])
    assert [r.error_code for r in results] == [None, None]
    assert not (store.root / "bk" / "ln").is_symlink()
    assert not (store.root / "bk" / "dirlink").is_symlink()
    assert target.read_bytes() == b"keep me"
