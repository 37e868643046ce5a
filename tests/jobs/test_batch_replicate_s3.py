"""BATCH_REPLICATE over real S3 servers: Ceph RGW and moto (replication configuration,
which this Ceph lacks, on moto only), same-endpoint and cross-endpoint copies."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from objectjobs.models import JobState
from objectjobs.settings import Settings
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import Capabilities, ObjectMeta, Storage
from objectjobs.storage.local import LocalStorage
from objectjobs.storage.s3 import FULL_S3
from objectjobs.store.interface import JobStore

from .test_batch_replicate_helpers import (
    bodies,
    bucket_name,
    history,
    report,
    run_job,
    with_s3,
    with_target,
)

pytestmark = pytest.mark.s3
MiB = 1024 * 1024
# Ceph RGW Pacific answers 405 to PutBucketReplication: declared, not probed
RGW_CAPABILITIES = dataclasses.replace(FULL_S3, replication_config=False)


@pytest.fixture
def store(sqlite_store: JobStore) -> JobStore:
    # the job store is not what these tests are about: SQLite only keeps them quick (the
    # local BATCH_REPLICATE tests and the store suite run against PostgreSQL too)
    return sqlite_store


@dataclasses.dataclass
class S3Case:
    name: str
    endpoint: Any
    caps: Capabilities
    settings: Settings
    storage: Storage


@pytest.fixture(params=["rgw", "moto"])
async def s3(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[S3Case]:
    endpoint = request.getfixturevalue("rgw" if request.param == "rgw" else "moto_s3")
    caps = RGW_CAPABILITIES if request.param == "rgw" else FULL_S3
    # a low single-copy limit so a 12 MiB object is copied with part-copies
    configured = with_s3(
        settings, endpoint, single_copy_limit=5 * MiB, multipart_chunk_size=5 * MiB
    )
    storage = open_storage(configured.storage, capabilities=caps)
    yield S3Case(request.param, endpoint, caps, configured, storage)
    await storage.close()


async def multipart_object(storage: Storage, bucket: str, key: str, meta: ObjectMeta) -> bytes:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(2 * MiB)]
    upload = await storage.create_upload(bucket, key, meta=meta)
    done = [await storage.upload_part(bucket, key, upload, i + 1, p) for i, p in enumerate(parts)]
    await storage.complete_upload(bucket, key, upload, done)
    return b"".join(parts)


async def fill(storage: Storage, bucket: str) -> tuple[dict[str, bytes], dict[str, ObjectMeta]]:
    metas = {
        "docs/a.csv": ObjectMeta(
            content_type="text/csv",
            content_disposition="attachment",
            cache_control="max-age=60",
            content_language="fr",
            metadata={"owner": "ana", "n": "1"},
            tags={"team": "blue", "x": "y z"},
        ),
        "docs/b.bin": ObjectMeta(content_type="application/x-b", metadata={"k": "v"}),
    }
    data = {k: os.urandom(1000 + i) for i, k in enumerate(metas)}
    for key, body in data.items():
        await storage.put(bucket, key, body, meta=metas[key])
    for i in range(40):
        data[f"many/{i:03d}"] = os.urandom(i * 10)
        await storage.put(bucket, f"many/{i:03d}", data[f"many/{i:03d}"])
    big_meta = ObjectMeta(content_type="video/x-big", metadata={"big": "yes"}, tags={"t": "1"})
    data["big"] = await multipart_object(storage, bucket, "big", big_meta)
    metas["big"] = big_meta
    return data, metas


async def assert_same_meta(
    src: Storage, sb: str, dst: Storage, db: str, keys: Any, version: bool = False
) -> None:
    for key in keys:
        a, b = await src.head(sb, key), await dst.head(db, key)
        assert a.size == b.size, key
        for field in (
            "content_type",
            "content_disposition",
            "cache_control",
            "content_language",
            "metadata",
            "tags",
        ):
            assert getattr(a.meta, field) == getattr(b.meta, field), (key, field)


async def test_unversioned_bucket_same_endpoint_then_nothing_left_to_copy(
    s3: S3Case, store: JobStore, owner: int
) -> None:
    src, dst = bucket_name(), bucket_name()
    await s3.storage.create_bucket(src)
    await s3.storage.create_bucket(dst)
    data, metas = await fill(s3.storage, src)

    final = await run_job(store, owner, s3.settings, s3.storage, src, targetBucket=dst)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    failed = [r for r in await report(store, final.id) if r.outcome.value == "FAILED"]
    assert failed == []
    assert (final.processed, final.failed, final.skipped) == (len(data), 0, 0)
    assert final.bytes_done == sum(len(b) for b in data.values())
    assert await bodies(s3.storage, dst) == data
    await assert_same_meta(s3.storage, src, s3.storage, dst, metas)

    again = await run_job(store, owner, s3.settings, s3.storage, src, targetBucket=dst)
    assert again.state is JobState.COMPLETE
    assert (again.processed, again.skipped, again.bytes_done) == (len(data), len(data), 0)
    assert again.plan is not None and "copy" not in again.plan
    assert {r.message for r in await report(store, again.id)} == {"identical"}


async def test_versioned_source_every_version_in_order(
    s3: S3Case, store: JobStore, owner: int
) -> None:
    src, dst = bucket_name(), bucket_name()
    await s3.storage.create_bucket(src, versioning=True)
    await s3.storage.create_bucket(dst, versioning=True)
    for n in range(3):
        meta = ObjectMeta(content_type=f"text/v{n}", metadata={"n": str(n)}, tags={"n": str(n)})
        await s3.storage.put(src, "doc", f"version {n}".encode(), meta=meta)
    await s3.storage.put(src, "gone", b"was here")
    await s3.storage.delete(src, "gone")  # a delete marker: not replicated without a rule
    await s3.storage.put(src, "plain", b"p")

    final = await run_job(store, owner, s3.settings, s3.storage, src, targetBucket=dst)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert [r for r in await report(store, final.id) if r.outcome.value == "FAILED"] == []
    assert final.failed == 0 and final.processed == 6
    got = await history(s3.storage, dst)
    assert got == {
        "doc": [b"version 0", b"version 1", b"version 2"],
        "gone": [b"was here"],
        "plain": [b"p"],
    }
    # each version kept its own metadata and tags
    versions = [v async for page in s3.storage.list_versions(dst, prefix="doc") for v in page]
    for n, v in enumerate(reversed(versions)):
        info = await s3.storage.head(dst, "doc", v.version_id)
        assert (info.meta.content_type, info.meta.metadata, info.meta.tags) == (
            f"text/v{n}",
            {"n": str(n)},
            {"n": str(n)},
        )

    again = await run_job(store, owner, s3.settings, s3.storage, src, targetBucket=dst)
    assert again.plan is not None and "copy" not in again.plan
    assert await history(s3.storage, dst) == got


async def test_new_never_overwrites_all_does(s3: S3Case, store: JobStore, owner: int) -> None:
    src, dst = bucket_name(), bucket_name()
    await s3.storage.create_bucket(src)
    await s3.storage.create_bucket(dst)
    await s3.storage.put(src, "k", b"source body")
    await s3.storage.put(src, "new", b"n")
    await s3.storage.put(dst, "k", b"target body")
    new = await run_job(
        store, owner, s3.settings, s3.storage, src, targetBucket=dst, replicationFilter="NEW"
    )
    assert new.state is JobState.COMPLETE
    assert await bodies(s3.storage, dst) == {"k": b"target body", "new": b"n"}
    full = await run_job(store, owner, s3.settings, s3.storage, src, targetBucket=dst)
    assert full.state is JobState.COMPLETE
    assert await bodies(s3.storage, dst) == {"k": b"source body", "new": b"n"}


def replication_config(dst: str, prefix: str) -> dict[str, Any]:
    return {
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [
            {
                "ID": "off",
                "Priority": 5,
                "Status": "Disabled",
                "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Disabled"},
                "Destination": {"Bucket": "arn:aws:s3:::nowhere"},
            },
            {
                "ID": "in",
                "Priority": 1,
                "Status": "Enabled",
                "Filter": {"Prefix": prefix},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "Destination": {"Bucket": f"arn:aws:s3:::{dst}"},
            },
        ],
    }


async def test_destination_from_the_replication_configuration_on_moto(
    moto_s3: Any, settings: Settings, store: JobStore, owner: int
) -> None:
    # moto 5.2 keeps a rule's destination, status and priority but answers every rule's
    # Filter as {"Prefix": ""} (its GetBucketReplication hard-codes it): the prefix filter
    # is tested on the local driver, whose configuration round-trips whole
    configured = with_s3(settings, moto_s3)
    async with open_storage(configured.storage) as storage:
        src, dst = bucket_name(), bucket_name()
        await storage.create_bucket(src, versioning=True)
        await storage.create_bucket(dst, versioning=True)
        await storage.put_bucket_config(src, "replication", replication_config(dst, ""))
        for key in ("in/a", "out/a"):
            await storage.put(src, key, key.encode())
        final = await run_job(store, owner, configured, storage, src)
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert await bodies(storage, dst) == {"in/a": b"in/a", "out/a": b"out/a"}


async def test_replication_configuration_prefix_filter_on_local(
    local: LocalStorage, settings: Settings, store: JobStore, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    await local.put("dst", "out/a", b"untouched")
    await local.put_bucket_config("src", "replication", replication_config("dst", "in/"))
    for key in ("in/a", "in/b", "out/a", "top"):
        await local.put("src", key, key.encode())
    final = await run_job(store, owner, settings, local, "src")
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (4, 0)
    assert await bodies(local, "dst") == {"in/a": b"in/a", "in/b": b"in/b", "out/a": b"untouched"}


async def test_cross_endpoint_streamed_copy_keeps_versions_and_metadata(
    s3: S3Case, moto_s3_second: Any, store: JobStore, owner: int
) -> None:
    configured = with_target(s3.settings, "far", moto_s3_second, multipart_chunk_size=5 * MiB)
    src, dst = bucket_name(), bucket_name()
    await s3.storage.create_bucket(src, versioning=True)
    data, metas = await fill(s3.storage, src)
    await s3.storage.put(src, "many/000", b"second version")
    async with open_storage(configured.targets["far"]) as far:
        await far.create_bucket(dst, versioning=True)
        final = await run_job(
            store, owner, configured, s3.storage, src, target="far", targetBucket=dst
        )
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert final.failed == 0
        data["many/000"] = b"second version"
        assert await bodies(far, dst) == data
        assert (await history(far, dst))["many/000"] == [b"", b"second version"]
        await assert_same_meta(s3.storage, src, far, dst, metas)
        # the multipart source got the same part layout, hence the same ETag
        assert (await far.head(dst, "big")).etag == (await s3.storage.head(src, "big")).etag

        again = await run_job(
            store, owner, configured, s3.storage, src, target="far", targetBucket=dst
        )
        assert again.plan is not None and "copy" not in again.plan


async def test_local_to_s3(
    local: LocalStorage, moto_s3_second: Any, settings: Settings, store: JobStore, owner: int
) -> None:
    configured = with_target(settings, "far", moto_s3_second, multipart_chunk_size=5 * MiB)
    await local.create_bucket("src")
    data = {f"f/{i:03d}": os.urandom(i * 7) for i in range(30)}
    for key, body in data.items():
        await local.put("src", key, body, meta=ObjectMeta(content_type="x/y", tags={"i": key}))
    data["large"] = os.urandom(11 * MiB)
    await local.put("src", "large", data["large"])
    dst = bucket_name()
    async with open_storage(configured.targets["far"]) as far:
        await far.create_bucket(dst)
        final = await run_job(
            store, owner, configured, local, "src", target="far", targetBucket=dst
        )
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert await bodies(far, dst) == data
        info = await far.head(dst, "f/005")
        assert (info.meta.content_type, info.meta.tags) == ("x/y", {"i": "f/005"})
        again = await run_job(
            store, owner, configured, local, "src", target="far", targetBucket=dst
        )
        assert again.plan is not None and "copy" not in again.plan


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


async def test_256_mib_object_streams_in_bounded_memory(
    rgw: Any, moto_s3_second: Any, settings: Settings, store: JobStore, owner: int
) -> None:
    configured = with_target(with_s3(settings, rgw), "far", moto_s3_second)
    size = 256 * MiB
    async with (
        open_storage(configured.storage, capabilities=RGW_CAPABILITIES) as storage,
        open_storage(configured.targets["far"]) as far,
    ):
        src, dst = bucket_name(), bucket_name()
        await storage.create_bucket(src)
        await far.create_bucket(dst)
        block = os.urandom(MiB)

        async def body() -> AsyncIterator[bytes]:
            for i in range(size // MiB):
                yield bytes([i % 256]) + block[1:]

        await storage.put(src, "huge", body(), size=size)
        with open("/proc/self/clear_refs", "w") as f:  # noqa: ASYNC230 - a proc file
            f.write("5")  # resets VmHWM to the current RSS
        before = _status("VmRSS")
        final = await run_job(
            store, owner, configured, storage, src, target="far", targetBucket=dst, wait_s=300
        )
        growth = _status("VmHWM") - before
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert final.bytes_done == size
        # Never the whole object (256 MiB): at most a few 16 MiB parts in flight, each also
        # copied once or twice by the clients on its way (measured 94-128 MiB; the bound
        # leaves room for the allocator, while a body held whole would still exceed it).
        assert growth < 200 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB"
        assert (await far.head(dst, "huge")).size == size
        # the body arrived intact: compare block by block, streaming
        async with await far.get(dst, "huge") as stream:
            got = bytearray()
            n = 0
            async for chunk in stream:
                got += chunk
                while len(got) >= MiB:
                    assert got[:MiB] == bytes([n % 256]) + block[1:], f"block {n}"
                    del got[:MiB]
                    n += 1
        assert n == size // MiB and not got
