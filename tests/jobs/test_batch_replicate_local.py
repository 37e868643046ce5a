"""BATCH_REPLICATE on the local driver: local→local, filters, failures, takeover."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from objectjobs.errors import InvalidRequest, StorageError, TransientStorageError
from objectjobs.jobs.batch_replicate import BatchReplicate
from objectjobs.models import JobState, JobType, NewJob, Outcome
from objectjobs.settings import Settings
from objectjobs.storage.interface import CopyRequest, ObjectMeta, WriteResult
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore

from .support import create_job, running_workers, wait_for
from .test_batch_replicate_helpers import bodies, report, run_job

REPL = JobType.BATCH_REPLICATE


async def fill(local: LocalStorage, bucket: str, n: int, prefix: str = "k/") -> dict[str, bytes]:
    data = {f"{prefix}{i:04d}": os.urandom(i % 300) for i in range(n)}
    for key, body in data.items():
        await local.put(bucket, key, body)
    return data


async def test_local_to_local_copies_everything_then_nothing(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    data = await fill(local, "src", 900)
    meta = ObjectMeta(content_type="text/csv", metadata={"a": "1"}, tags={"t": "x"})
    await local.put("src", "with-meta", b"m" * 10, meta=meta)
    data["with-meta"] = b"m" * 10
    # written by another tool: no sidecar, so no ETag in the listing
    (local.root / "src" / "foreign").write_bytes(b"f" * 77)
    data["foreign"] = b"f" * 77

    final = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed, final.skipped) == (len(data), 0, 0)
    assert final.plan is not None and final.plan["copy"]["objects"] == len(data)
    assert await bodies(local, "dst") == data
    info = await local.head("dst", "with-meta")
    assert (info.meta.content_type, info.meta.metadata, info.meta.tags) == (
        "text/csv",
        {"a": "1"},
        {"t": "x"},
    )

    again = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert again.state is JobState.COMPLETE
    assert (again.processed, again.skipped, again.bytes_done) == (len(data), len(data), 0)
    assert again.plan is not None and "copy" not in again.plan
    outcomes = await report(store, again.id)
    assert {(r.outcome, r.message) for r in outcomes} == {(Outcome.SKIPPED, "identical")}
    assert len(outcomes) == len(data)


async def test_new_never_overwrites_and_all_does(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    await local.put("src", "same", b"1" * 10)
    await local.put("src", "changed", b"new body")
    await local.put("src", "missing", b"m")
    await local.put("dst", "same", b"1" * 10)
    await local.put("dst", "changed", b"old")

    new = await run_job(
        store, owner, settings, local, "src", targetBucket="dst", replicationFilter="NEW"
    )
    assert new.state is JobState.COMPLETE
    assert await bodies(local, "dst") == {"same": b"1" * 10, "changed": b"old", "missing": b"m"}
    by_key = {r.key: r for r in await report(store, new.id)}
    assert by_key["changed"].message == "exists on target"
    assert by_key["missing"].outcome is Outcome.SUCCEEDED

    full = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert full.state is JobState.COMPLETE
    assert (await bodies(local, "dst"))["changed"] == b"new body"
    by_key = {r.key: r for r in await report(store, full.id)}
    assert by_key["changed"].outcome is Outcome.SUCCEEDED
    assert by_key["same"].message == "identical"


async def test_failed_filter_retries_only_earlier_failures(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    await local.put("src", "a", b"A")
    await local.put("src", "b", b"B")
    # "a" cannot be written on the target while the key "a/x" makes "a" a directory there
    await local.put("dst", "a/x", b"blocker")
    first = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert (first.processed, first.failed) == (1, 1)
    failed = [r for r in await report(store, first.id) if r.outcome is Outcome.FAILED]
    assert [r.key for r in failed] == ["a"]

    await local.delete("dst", "a/x")
    await local.put("src", "c", b"C")  # new, but it never failed: FAILED leaves it alone
    retry = await run_job(
        store, owner, settings, local, "src", targetBucket="dst", replicationFilter="FAILED"
    )
    assert retry.state is JobState.COMPLETE, retry.failure_reasons
    assert await bodies(local, "dst") == {"a": b"A", "b": b"B"}
    assert [(r.key, r.outcome) for r in await report(store, retry.id)] == [("a", Outcome.SUCCEEDED)]
    assert await store.failed_keys("src", "BATCH_REPLICATE") == set()


async def test_prefix_limits_the_copy(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    await fill(local, "src", 30, "in/")
    await fill(local, "src", 30, "out/")
    final = await run_job(store, owner, settings, local, "src", targetBucket="dst", prefix="in/")
    assert final.processed == 30
    assert all(k.startswith("in/") for k in await bodies(local, "dst"))


async def test_object_deleted_during_the_job_is_skipped_not_failed(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    data = await fill(local, "src", 50)
    job = await create_job(store, owner, "src", REPL, targetBucket="dst", dryRun="false")
    # planned while the object exists, gone before EXECUTE copies it
    gate = asyncio.Event()
    handler = _PausingReplicate(gate)
    async with running_workers(settings, store, local, handlers={REPL: handler}):
        await wait_for(store, job.id, lambda j: handler.paused.is_set())
        await local.delete("src", "k/0007")
        gate.set()
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (50, 0)
    by_key = {r.key: r for r in await report(store, job.id)}
    assert (by_key["k/0007"].outcome, by_key["k/0007"].message) == (
        Outcome.SKIPPED,
        "deleted at source",
    )
    del data["k/0007"]
    assert await bodies(local, "dst") == data


class _PausingReplicate(BatchReplicate):
    """Waits, after deciding and before copying, until the test has changed the source."""

    def __init__(self, gate: asyncio.Event) -> None:
        self.gate, self.paused = gate, asyncio.Event()

    async def _decide(self, ctx, setup, groups):  # type: ignore[no-untyped-def]
        decided = await super()._decide(ctx, setup, groups)
        if ctx.task.phase.value == "EXECUTE":
            self.paused.set()
            await self.gate.wait()
        return decided


async def test_takeover_after_a_killed_worker_leaves_nothing_missing(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    data = await fill(local, "src", 900)
    job = await create_job(store, owner, "src", REPL, targetBucket="dst")
    async with running_workers(settings, store, local):
        await wait_for(store, job.id, lambda j: j.processed >= 300)
    # the worker's tasks were cancelled abruptly: their leases lapse, a new worker resumes
    mid = await store.get_job(job.id)
    assert mid is not None and mid.state.active
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert final.failed == 0
    assert await bodies(local, "dst") == data
    results = await report(store, job.id)
    copied = [r.key for r in results if r.outcome is Outcome.SUCCEEDED]
    # every key reported; a batch in flight at the kill may be copied (and reported) twice
    assert {r.key for r in results} == set(data)
    assert len(copied) - len(set(copied)) <= 400


async def test_validate_refuses_what_does_not_resolve(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    handler = BatchReplicate()

    def job(**params: str) -> NewJob:
        return NewJob(REPL, "src", params, owner)

    with pytest.raises(InvalidRequest, match="replication configuration"):
        await handler.validate(job(), local, settings)
    with pytest.raises(InvalidRequest, match="does not exist"):
        await handler.validate(job(targetBucket="nowhere"), local, settings)
    with pytest.raises(InvalidRequest, match="not a configured target"):
        await handler.validate(job(target="far", targetBucket="b"), local, settings)
    with pytest.raises(InvalidRequest, match="source bucket itself"):
        await handler.validate(job(targetBucket="src"), local, settings)
    await local.put_bucket_config(
        "src",
        "replication",
        {
            "Role": "r",
            "Rules": [
                {"ID": "off", "Status": "Disabled", "Destination": {"Bucket": "arn:aws:s3:::x"}}
            ],
        },
    )
    with pytest.raises(InvalidRequest, match="no enabled rule"):
        await handler.validate(job(), local, settings)


async def test_target_vanishing_at_run_time_fails_the_job(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await fill(local, "src", 5)
    final = await run_job(store, owner, settings, local, "src", targetBucket="gone")
    assert final.state is JobState.FAILED
    assert any("gone" in r for r in final.failure_reasons)


class _FlakyBatches(LocalStorage):
    """Copies only in batches; "k/0013" fails once, transiently, "k/0042" for good."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.batches: list[int] = []
        self.flaked = False

    async def copy(self, *args: Any, **kwargs: Any) -> WriteResult:
        raise AssertionError("a batched copy was made one by one")

    async def copy_many(
        self, src_bucket: str, dst_bucket: str, items: Sequence[CopyRequest]
    ) -> list[WriteResult | StorageError]:
        self.batches.append(len(items))
        failing: dict[str, StorageError] = {"k/0042": StorageError("refused")}
        if not self.flaked:
            failing["k/0013"] = TransientStorageError("slow down")
        keep = [r for r in items if r.src_key not in failing]
        done = iter(await super().copy_many(src_bucket, dst_bucket, keep))
        out = [failing.get(r.src_key) or next(done) for r in items]
        self.flaked = self.flaked or any(r.src_key == "k/0013" for r in items)
        return out


async def test_batched_copies_retry_transient_failures_and_record_lasting_ones(
    store: JobStore, settings: Settings, owner: int, tmp_path: Path
) -> None:
    flaky = _FlakyBatches(tmp_path / "flaky")
    await flaky.create_bucket("src")
    await flaky.create_bucket("dst")
    data = await fill(flaky, "src", 300)
    final = await run_job(store, owner, settings, flaky, "src", targetBucket="dst")
    await flaky.close()
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed, final.skipped) == (299, 1, 0)
    assert max(flaky.batches) > 1 and flaky.flaked
    by_key = {r.key: r for r in await report(store, final.id)}
    assert len(by_key) == 300
    assert (by_key["k/0042"].outcome, by_key["k/0042"].message) == (Outcome.FAILED, "refused")
    assert by_key["k/0013"].outcome is Outcome.SUCCEEDED
    del data["k/0042"]
    assert await bodies(flaky, "dst") == data


async def test_etags_decide_where_the_source_has_them_size_and_time_elsewhere(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await local.create_bucket("src")
    await local.create_bucket("dst")
    await local.put("src", "a/ours", b"AAAA")  # a sidecar: its ETag is known
    (local.root / "src" / "b").mkdir()
    (local.root / "src" / "b" / "theirs").write_bytes(b"CCCC")  # no ETag in listings
    # the target: same sizes, written later, other bodies
    await local.put("dst", "a/ours", b"BBBB")
    await local.put("dst", "b/theirs", b"DDDD")
    listed: list[str] = []
    sized = local.list_versions_sized

    def spy(bucket: str, **kwargs: Any) -> Any:
        listed.append(kwargs["end_key"])
        return sized(bucket, **kwargs)

    local.list_versions_sized = spy  # type: ignore[method-assign]
    final = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert final.state is JobState.COMPLETE, final.failure_reasons
    by_key = {r.key: r for r in await report(store, final.id)}
    # ETags differ: copied; no ETag at the source: same size, newer on the target
    assert by_key["a/ours"].outcome is Outcome.SUCCEEDED
    assert (by_key["b/theirs"].outcome, by_key["b/theirs"].message) == (
        Outcome.SKIPPED,
        "identical",
    )
    assert await bodies(local, "dst") == {"a/ours": b"AAAA", "b/theirs": b"DDDD"}
    # a batch with a/ours in it had the target listed with ETags
    assert "a/ours" not in listed
    # without ETags at the source, sized
    await local.delete("src", "a/ours")
    listed.clear()
    again = await run_job(store, owner, settings, local, "src", targetBucket="dst")
    assert again.state is JobState.COMPLETE, again.failure_reasons
    assert listed and set(listed) == {"b/theirs"}
