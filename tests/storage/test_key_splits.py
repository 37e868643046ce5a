"""Conformance: ``key_splits`` cuts a bucket's keys into ranges that together list every key
exactly once, on every driver."""

from __future__ import annotations

import pytest

from objectjobs.errors import BucketNotFound
from objectjobs.storage.key_splits import split_keys
from tests.storage.conftest import Backend
from tests.storage.test_listing import TRICKY, listed, put_all, s3_order

# six "directories" of four keys each, a key beside them, and the tricky names
TREE = [f"{d}/{k}" for d in ("d0", "d1", "d2", "d3", "d4", "d5") for k in "wxyz"]
KEYS = [*TREE, "d2-beside", *TRICKY]


async def keys_of_ranges(
    backend: Backend, bucket: str, splits: list[str], *, prefix: str, start_after: str
) -> list[list[str]]:
    """The keys of each range (start_after, b1], (b1, b2], ..., (bn, end)."""
    bounds: list[str | None] = [*splits, None]
    starts = [start_after, *splits]
    ranges = []
    for start, end in zip(starts, bounds, strict=True):
        entries, _ = await listed(
            backend.storage.list_objects(bucket, prefix=prefix, start_after=start, end_key=end)
        )
        ranges.append([e.key for e in entries])
    return ranges


@pytest.fixture
async def tree_bucket(backend: Backend) -> str:
    bucket = await backend.new_bucket()
    await put_all(backend, bucket, KEYS)
    return bucket


@pytest.mark.parametrize(
    ("prefix", "start_after"),
    [("", ""), ("", "d1/x"), ("d", ""), ("d3/", ""), ("a", "a-b")],
)
async def test_ranges_list_every_key_once(
    backend: Backend, tree_bucket: str, prefix: str, start_after: str
) -> None:
    splits = await backend.storage.key_splits(
        tree_bucket, prefix=prefix, start_after=start_after, parts=4
    )
    assert 0 < len(splits) <= 3, splits
    assert splits == sorted(set(splits)) and splits[0] > start_after
    ranges = await keys_of_ranges(
        backend, tree_bucket, splits, prefix=prefix, start_after=start_after
    )
    expected = s3_order([k for k in KEYS if k.startswith(prefix) and k > start_after])
    assert [k for r in ranges for k in r] == expected
    assert all(ranges), f"a range holds no key: {ranges}"


async def test_a_level_of_one_directory_is_looked_below(backend: Backend) -> None:
    bucket = await backend.new_bucket()
    await put_all(backend, bucket, [f"top/{key}" for key in TREE])
    # the top holds one directory: its six directories are the entries cut between
    splits = await backend.storage.key_splits(bucket, parts=3)
    assert splits == ["top/d2/", "top/d4/"]
    ranges = await keys_of_ranges(backend, bucket, splits, prefix="", start_after="")
    assert [len(r) for r in ranges] == [8, 8, 8]


async def test_one_part_or_nothing_to_cut_gives_no_boundary(
    backend: Backend, tree_bucket: str
) -> None:
    assert await backend.storage.key_splits(tree_bucket, parts=1) == []
    assert await backend.storage.key_splits(tree_bucket, prefix="d3/z", parts=4) == []
    assert await backend.storage.key_splits(tree_bucket, prefix="nothing/", parts=4) == []


async def test_missing_bucket(backend: Backend) -> None:
    with pytest.raises(BucketNotFound):
        await backend.storage.key_splits("oj-no-such-bucket-here", parts=4)


async def test_a_level_the_driver_cannot_read_cheaply_is_not_cut() -> None:
    async def children(directory: str) -> list[str] | None:
        return ["a/", "b/"] if directory == "" else None

    # the top has two entries, fewer than asked: below them is unknown, so cut at the top
    assert await split_keys(children, "", "", 4) == ["b/"]

    async def unreadable(directory: str) -> list[str] | None:
        return None

    assert await split_keys(unreadable, "", "", 4) == []
