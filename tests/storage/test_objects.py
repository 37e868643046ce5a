"""Conformance: buckets, put/get/head, streaming, copy, tags and deletes on every driver."""

from __future__ import annotations

import hashlib
import tracemalloc
from datetime import UTC, datetime

import pytest

from objectjobs.errors import BucketNotFound, NotFound, ObjectNotFound
from objectjobs.storage.interface import CopyRequest, ObjectMeta, WriteResult
from tests.storage.conftest import Backend
from tests.storage.helpers import MiB, collect, md5_of_stream, random_bytes, stream

META = ObjectMeta(
    content_type="text/plain; charset=utf-8",
    content_encoding="identity",
    content_language="en-GB",
    content_disposition='attachment; filename="report.txt"',
    cache_control="max-age=60",
    expires=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    metadata={"colour": "blue", "owner-id": "42"},
    tags={"project": "alpha", "tier": "gold"},
)


def assert_meta(meta: ObjectMeta, expected: ObjectMeta, *, tags: bool) -> None:
    for field in (
        "content_type",
        "content_encoding",
        "content_language",
        "content_disposition",
        "cache_control",
        "expires",
        "metadata",
    ):
        assert getattr(meta, field) == getattr(expected, field), field
    if tags:
        assert meta.tags == expected.tags


async def test_buckets(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    assert await s.bucket_exists(bucket)
    assert not await s.bucket_exists(bucket + "-missing")
    assert bucket in await s.list_buckets()
    await s.create_bucket(bucket)  # idempotent for our own bucket
    assert await s.get_versioning(bucket) is None


async def test_put_get_head_with_metadata(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    data = random_bytes(100_000)
    w = await s.put(bucket, "dir/report.txt", data, meta=META)
    md5 = f'"{hashlib.md5(data).hexdigest()}"'
    assert w.etag == md5
    info = await s.head(bucket, "dir/report.txt")
    assert (info.key, info.size, info.etag) == ("dir/report.txt", len(data), md5)
    assert_meta(info.meta, META, tags=backend.caps.tags)
    assert abs((datetime.now(UTC) - info.last_modified).total_seconds()) < 120
    async with await s.get(bucket, "dir/report.txt") as body:
        assert body.info.size == len(data)
        assert body.info.meta.content_type == META.content_type
        assert await body.read() == data


@pytest.mark.parametrize("key", ["a b+c", "é/ü/日本語.txt", "x!y'z(1)*", "deep/" * 8 + "leaf"])
async def test_key_round_trip(backend: Backend, key: str) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    await s.put(bucket, key, key.encode())
    async with await s.get(bucket, key) as body:
        assert await body.read() == key.encode()
    keys = [o.key for o in await collect(s.list_objects(bucket))]  # type: ignore[attr-defined]
    assert keys == [key]


async def test_empty_object(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    w = await s.put(bucket, "empty", b"")
    assert w.etag == f'"{hashlib.md5(b"").hexdigest()}"'
    assert (await s.head(bucket, "empty")).size == 0
    async with await s.get(bucket, "empty") as body:
        assert await body.read() == b""


async def test_ranged_get(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    data = random_bytes(3000)
    await s.put(bucket, "r", data)
    async with await s.get(bucket, "r", byte_range=(10, 19)) as body:
        assert await body.read() == data[10:20]
        assert body.info.size == len(data)
    async with await s.get(bucket, "r", byte_range=(2990, 5000)) as body:
        assert await body.read() == data[2990:]


async def test_streamed_get_of_64mib_keeps_memory_bounded(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    size = 64 * MiB
    await s.put(bucket, "big", stream(size, 3 * MiB + 17))
    expected = await md5_of_stream(size, 3 * MiB + 17)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        h, total, chunks = hashlib.md5(), 0, 0
        async with await s.get(bucket, "big") as body:
            async for chunk in body:
                h.update(chunk)
                total += len(chunk)
                chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, h.hexdigest()) == (size, expected)
    assert chunks >= 4  # really streamed, not one body
    assert peak < 16 * MiB, f"peak traced memory {peak / MiB:.1f} MiB while streaming 64 MiB"


async def test_streamed_put_from_async_generator(backend: Backend) -> None:
    s = backend.make(multipart_chunk_size=5 * MiB)
    bucket = await backend.new_bucket()
    assert await s.bucket_exists(bucket)  # client set up (botocore's models loaded) untraced
    size = 64 * MiB + 5
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        w = await s.put(bucket, "streamed", stream(size, 700 * 1024 + 3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a few 5 MiB chunks in flight (aiohttp copies each request body once), never the
    # whole 64 MiB: the bound is a count of chunks, whatever the object's size
    assert peak < 7 * 5 * MiB, f"peak traced memory {peak / MiB:.1f} MiB during a 64 MiB put"
    info = await s.head(bucket, "streamed")
    assert info.size == size
    assert info.etag == w.etag
    h = hashlib.md5()
    async with await s.get(bucket, "streamed") as body:
        async for chunk in body:
            h.update(chunk)
    assert h.hexdigest() == await md5_of_stream(size, 700 * 1024 + 3)


async def test_copy_keeps_or_replaces_metadata(backend: Backend) -> None:
    backend.require("server_side_copy")
    s = backend.storage
    src, dst = await backend.new_bucket(), await backend.new_bucket()
    data = random_bytes(4096)
    await s.put(src, "k", data, meta=META)
    w = await s.copy(src, "k", dst, "copied/k")
    assert w.etag == f'"{hashlib.md5(data).hexdigest()}"'
    info = await s.head(dst, "copied/k")
    assert info.size == len(data)
    assert_meta(info.meta, META, tags=backend.caps.tags)
    async with await s.get(dst, "copied/k") as body:
        assert await body.read() == data

    new = ObjectMeta(content_type="application/json", metadata={"x": "y"}, tags={"n": "1"})
    await s.copy(src, "k", src, "k2", meta=new)
    info2 = await s.head(src, "k2")
    assert info2.meta.content_type == "application/json"
    assert info2.meta.metadata == {"x": "y"}
    assert info2.meta.cache_control is None
    if backend.caps.tags:
        assert info2.meta.tags == {"n": "1"}


async def test_part_copy_above_single_copy_limit(backend: Backend) -> None:
    backend.require("server_side_copy")
    s = backend.make(single_copy_limit=5 * MiB, multipart_chunk_size=5 * MiB)
    bucket = await backend.new_bucket()
    size = 12 * MiB
    await s.put(bucket, "src", stream(size, MiB), meta=META)
    w = await s.copy(bucket, "src", bucket, "dst")
    info = await s.head(bucket, "dst")
    assert info.size == size and info.etag == w.etag
    assert_meta(info.meta, META, tags=backend.caps.tags)
    if s.driver == "s3":
        assert info.parts_count == 3  # three 5 MiB part-copies, not one CopyObject
    h = hashlib.md5()
    async with await s.get(bucket, "dst") as body:
        async for chunk in body:
            h.update(chunk)
    assert h.hexdigest() == await md5_of_stream(size, MiB)


async def test_copy_of_missing_source(backend: Backend) -> None:
    backend.require("server_side_copy")
    bucket = await backend.new_bucket()
    with pytest.raises(ObjectNotFound):
        await backend.storage.copy(bucket, "nope", bucket, "dst")


async def test_copy_many_copies_each_and_returns_failures_in_place(backend: Backend) -> None:
    backend.require("server_side_copy")
    s = backend.storage
    src, dst = await backend.new_bucket(), await backend.new_bucket()
    a, b = random_bytes(100), random_bytes(3000)
    await s.put(src, "a", a)
    await s.put(src, "dir/b", b, meta=META)
    got = await s.copy_many(
        src,
        dst,
        [
            CopyRequest("a", "a"),
            CopyRequest("gone", "gone"),
            CopyRequest("dir/b", "dir/b"),
            CopyRequest("a", "renamed", meta=ObjectMeta(content_type="text/csv")),
        ],
    )
    assert isinstance(got[1], ObjectNotFound)
    written = [got[0], got[2], got[3]]
    assert all(isinstance(w, WriteResult) for w in written)
    assert [w.etag for w in written if isinstance(w, WriteResult)] == [
        f'"{hashlib.md5(body).hexdigest()}"' for body in (a, b, a)
    ]
    for key, body in (("a", a), ("dir/b", b), ("renamed", a)):
        async with await s.get(dst, key) as stream:
            assert await stream.read() == body
    assert_meta((await s.head(dst, "dir/b")).meta, META, tags=backend.caps.tags)
    assert (await s.head(dst, "renamed")).meta.content_type == "text/csv"
    with pytest.raises(ObjectNotFound):
        await s.head(dst, "gone")


async def test_tags(backend: Backend) -> None:
    backend.require("tags")
    s = backend.storage
    bucket = await backend.new_bucket()
    await s.put(bucket, "t", b"x")
    assert await s.get_tags(bucket, "t") == {}
    await s.put_tags(bucket, "t", {"a": "1", "b": "two words"})
    assert await s.get_tags(bucket, "t") == {"a": "1", "b": "two words"}
    await s.put_tags(bucket, "t", {"c": "3"})
    assert await s.get_tags(bucket, "t") == {"c": "3"}
    assert (await s.head(bucket, "t")).meta.tags == {"c": "3"}
    with pytest.raises(ObjectNotFound):
        await s.get_tags(bucket, "missing")


async def test_delete_and_delete_many(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    for k in ("a/1", "a/2", "b", "c"):
        await s.put(bucket, k, k.encode())
    r = await s.delete(bucket, "b")
    assert r.key == "b" and r.error_code is None
    with pytest.raises(ObjectNotFound):
        await s.head(bucket, "b")
    assert (await s.delete(bucket, "never-existed")).error_code is None
    results = await s.delete_many(bucket, [("a/1", None), ("a/2", None), ("ghost", None)])
    assert [(x.key, x.error_code) for x in results] == [
        ("a/1", None),
        ("a/2", None),
        ("ghost", None),
    ]
    keys = [o.key for o in await collect(s.list_objects(bucket))]  # type: ignore[attr-defined]
    assert keys == ["c"]


async def test_missing_bucket_and_key(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    missing = bucket + "-nope"
    with pytest.raises(BucketNotFound):
        await s.put(missing, "k", b"x")
    with pytest.raises(BucketNotFound):
        await collect(s.list_objects(missing))
    with pytest.raises(BucketNotFound):
        await s.get_versioning(missing)
    with pytest.raises(NotFound):  # HEAD's 404 has no body: bucket or key, S3 can't say
        await s.head(missing, "k")
    with pytest.raises(ObjectNotFound):
        await s.head(bucket, "k")
    with pytest.raises(ObjectNotFound):
        await s.get(bucket, "k")
