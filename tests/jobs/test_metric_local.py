"""METRIC_RECONCILIATION on the local driver, exact, with before/after/delta."""

from __future__ import annotations

import os

import pytest

from objectjobs.models import JobState
from objectjobs.settings import Settings
from objectjobs.storage import local_files
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore

from .support import create_job, running_workers, wait_for


async def test_counts_a_local_bucket_exactly_and_records_the_delta(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("m1")
    sizes = {f"k/{i:04d}": (i * 37) % 1000 for i in range(950)}
    for key, size in sizes.items():
        path = local.root / "m1" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    upload = await local.create_upload("m1", "big.bin")
    await local.upload_part("m1", "big.bin", upload, 1, b"a" * 5000)
    await local.upload_part("m1", "big.bin", upload, 2, b"b" * 700)

    job = await create_job(store, owner, "m1")
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (950, 0)
    assert final.bytes_done == sum(sizes.values())  # describe's progress.bytes
    after = final.usage["after"] if final.usage else None
    assert after is not None
    assert after["currentObjects"] == 950
    assert after["currentBytes"] == sum(sizes.values())
    assert (after["noncurrentVersions"], after["deleteMarkers"]) == (0, 0)
    assert (after["multipartUploads"], after["multipartParts"], after["multipartBytes"]) == (
        1,
        2,
        5700,
    )
    assert after["byStorageClass"] == {"STANDARD": {"objects": 950, "bytes": sum(sizes.values())}}
    assert final.usage is not None and final.usage["before"] is None
    stored = await store.get_usage("m1")
    assert stored is not None and stored.usage == after and stored.job_id == job.id

    # the bucket changes; a second job reports before/after/delta against the first
    (local.root / "m1" / "k/0001").unlink()
    (local.root / "m1" / "new").write_bytes(b"z" * 123)
    second = await create_job(store, owner, "m1")
    async with running_workers(settings, store, local):
        final2 = await wait_for(store, second.id)
    assert final2.usage is not None
    assert final2.usage["before"] == after
    delta = final2.usage["delta"]
    assert delta["currentObjects"] == 0
    assert delta["currentBytes"] == 123 - sizes["k/0001"]


async def test_fix_false_reports_without_replacing_the_stored_usage(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("m2")
    (local.root / "m2" / "a").write_bytes(b"12345")
    job = await create_job(store, owner, "m2", fix="false")
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE
    assert final.usage is not None and final.usage["after"]["currentBytes"] == 5
    assert await store.get_usage("m2") is None


async def test_counts_without_reading_a_sidecar_per_object(
    store: JobStore,
    local: LocalStorage,
    settings: Settings,
    owner: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await local.create_bucket("m3")
    for i in range(30):
        await local.put("m3", f"d/{i:02d}", b"x" * i)  # each with its etag's sidecar
    sidecar_reads: list[str] = []
    read = local_files.sidecar_etag

    def counted(path: str, st: os.stat_result) -> str | None:
        sidecar_reads.append(path)
        return read(path, st)

    monkeypatch.setattr(local_files, "sidecar_etag", counted)
    job = await create_job(store, owner, "m3")
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert final.usage is not None
    assert final.usage["after"]["currentObjects"] == 30
    assert final.usage["after"]["currentBytes"] == sum(range(30))
    assert sidecar_reads == []  # sizes are all a count needs
