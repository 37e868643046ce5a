"""The job engine on both job stores: phases, progress, dry run, cancel, failures, retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

from objectjobs.engine import PAGE_SIZE
from objectjobs.models import JobState, JobType, Outcome, Phase
from objectjobs.settings import Settings, load_settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore

from .probe import ProbeHandler
from .support import create_job, ended, running_workers, wait_for


def fill(root: Path, bucket: str, count: int, size: int = 10) -> int:
    base = root / bucket
    base.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(count):
        path = base / f"d{i % 7}" / f"obj-{i:05d}"
        path.parent.mkdir(exist_ok=True)
        body = b"x" * (size + i % 13)
        path.write_bytes(body)
        total += len(body)
    return total


async def test_phases_run_in_order_with_progress_visible(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b1", 1200)
    job = await create_job(store, owner, "b1", objectsPerSecond="1500")
    seen: list[tuple[JobState, int]] = []
    async with running_workers(settings, store, local):
        while True:
            current = await store.get_job(job.id)
            assert current is not None
            seen.append((current.state, current.processed))
            if ended(current):
                break
            await asyncio.sleep(0.02)
    states = [s for s, _ in seen]
    order = [JobState.EXAMINING, JobState.PROCESSING, JobState.EXECUTING, JobState.COMPLETE]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
    assert states[-1] is JobState.COMPLETE
    assert JobState.PROCESSING in states
    # progress was visible in the middle of the job, not only at the end (a count counts
    # while EXAMINING lists the bucket)
    assert any(0 < p < 1200 for s, p in seen if s in (JobState.EXAMINING, JobState.PROCESSING))
    final = await store.get_job(job.id)
    assert final is not None and final.processed == 1200 and final.failed == 0
    assert final.totals == {"objects": 1200, "bytes": final.totals["bytes"]}
    assert final.complete_time is not None
    # 1200 objects in seven directories, cut at 400 per partition: after the first
    # partition, the rest was examined in key ranges of its own; several PROCESS tasks
    assert len(await store.list_tasks(job.id, Phase.EXAMINE)) > 1
    assert len(await store.list_tasks(job.id, Phase.PROCESS)) >= 3


async def test_dry_run_ends_after_processing_and_changes_nothing(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b2", 50)
    handler = ProbeHandler()
    job = await create_job(store, owner, "b2", JobType.BATCH_REPLICATE, dryRun="true")
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE
    assert final.processed == 50  # evaluated
    assert final.plan is not None and final.plan["touch"]["objects"] == 50
    assert handler.attempts == {}  # nothing executed
    assert await store.list_tasks(job.id, Phase.EXECUTE) == []


async def test_transient_errors_are_retried_to_success(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b3", 30)
    handler = ProbeHandler(flaky={"d0/obj-00000": 2, "d1/obj-00001": 3})
    job = await create_job(store, owner, "b3", JobType.BATCH_REPLICATE)
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE
    assert (final.processed, final.failed) == (30, 0)
    assert handler.attempts["d0/obj-00000"] == 3
    assert handler.attempts["d1/obj-00001"] == 4


async def test_permanent_errors_are_recorded_per_object(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b4", 40)
    bad = {"d2/obj-00002", "d3/obj-00010"}
    handler = ProbeHandler(fail=bad)
    job = await create_job(store, owner, "b4", JobType.BATCH_REPLICATE)
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE  # 5% failed, under the default 50%
    assert (final.processed, final.failed) == (38, 2)
    failed = await store.list_results(job.id, outcome="FAILED")
    assert {r.key for _, r in failed} == bad
    assert all(r.error_code == "AccessDenied" and r.outcome is Outcome.FAILED for _, r in failed)
    assert all(handler.attempts[k] == 1 for k in bad)  # permanent: not retried


async def test_failure_threshold_turns_the_job_failed_with_a_reason(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b5", 20)
    handler = ProbeHandler(fail={f"d{i % 7}/obj-{i:05d}" for i in range(12)})
    job = await create_job(store, owner, "b5", JobType.BATCH_REPLICATE, maxFailurePercent="25")
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert final.state is JobState.FAILED
    assert final.complete_time is not None
    assert any("maxFailurePercent=25" in r for r in final.failure_reasons)


async def test_cancel_stops_the_work_promptly(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b6", 2000)
    job = await create_job(store, owner, "b6", objectsPerSecond="400")
    async with running_workers(settings, store, local):
        await wait_for(store, job.id, lambda j: j.processed > 0)
        cancelled = await store.request_cancel(job.id)
        assert cancelled.state is JobState.CANCELLED
        # within about a second no task of the job is running any more, on any worker
        await asyncio.sleep(1.5)
        frozen = await store.get_job(job.id)
        assert frozen is not None
        await asyncio.sleep(1.0)
        later = await store.get_job(job.id)
    assert later is not None and frozen.processed == later.processed < 2000
    assert later.state is JobState.CANCELLED and later.complete_time is not None


async def test_missing_bucket_fails_the_job_with_the_reason(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    job = await create_job(store, owner, "no-such-bucket")
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.FAILED
    assert any("NoSuchBucket" in r for r in final.failure_reasons)


async def test_many_workers_share_one_job(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b7", 3000)
    handler = ProbeHandler()
    job = await create_job(store, owner, "b7", JobType.BATCH_REPLICATE, objectsPerSecond="3000")
    async with running_workers(
        settings, store, local, count=3, handlers={JobType.BATCH_REPLICATE: handler}
    ):
        final = await wait_for(store, job.id)
    assert (final.state, final.processed, final.failed) == (JobState.COMPLETE, 3000, 0)
    executed = await store.list_tasks(job.id, Phase.EXECUTE)
    assert len({t.lease_owner for t in executed}) > 1
    # every object handled; exactly once unless a lease expired under load (at least once)
    assert sorted(handler.attempts) == sorted(f"d{i % 7}/obj-{i:05d}" for i in range(3000))
    if not any(t.attempts for t in executed):
        assert set(handler.attempts.values()) == {1}


class _BrokenOnce(ProbeHandler):
    """Raises an unexpected error in PROCESSING the first ``times`` times."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def plan(self, ctx, groups):  # type: ignore[no-untyped-def]
        if self.times > 0:
            self.times -= 1
            raise RuntimeError("bug in a handler")
        return await super().plan(ctx, groups)


async def test_a_failed_task_run_is_retried_by_the_same_single_worker(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b8", 30)
    handler = _BrokenOnce(times=2)
    job = await create_job(store, owner, "b8", JobType.BATCH_REPLICATE)
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert (final.state, final.processed) == (JobState.COMPLETE, 30)


async def test_a_task_that_keeps_failing_fails_its_job_with_the_reason(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    fill(local.root, "b9", 5)
    job = await create_job(store, owner, "b9", JobType.BATCH_REPLICATE)
    handlers = {JobType.BATCH_REPLICATE: _BrokenOnce(times=100)}
    async with running_workers(settings, store, local, handlers=handlers):
        final = await wait_for(store, job.id)
    assert final.state is JobState.FAILED
    assert any("bug in a handler" in r and "5 times" in r for r in final.failure_reasons)


def _one_partition(tmp_path: Path) -> Settings:
    """One EXECUTE task whose range takes several batches (PAGE_SIZE keys each)."""
    return load_settings(
        data_dir=tmp_path,
        worker={"poll_s": 0.05, "partition_objects": 100_000, "retry_base_s": 0.01},
    )


async def test_the_failure_threshold_stops_a_task_between_its_batches(
    store: JobStore, local: LocalStorage, tmp_path: Path, owner: int
) -> None:
    fill(local.root, "b10", 2500)
    # listing order is d0/..., d1/..., ...: the first two batches (about PAGE_SIZE keys
    # each) are mostly failures, judged once 1000 objects were attempted
    handler = ProbeHandler(fail={f"d{i % 7}/obj-{i:05d}" for i in range(2500) if i % 7 < 4})
    job = await create_job(store, owner, "b10", JobType.BATCH_REPLICATE)
    settings = _one_partition(tmp_path)
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
    assert final.state is JobState.FAILED
    attempted = final.processed + final.failed
    assert any(f"of {attempted} objects failed" in r for r in final.failure_reasons)
    # stopped after the batch that crossed the threshold, the task's last batch untried
    assert PAGE_SIZE <= len(handler.attempts) == attempted <= 2 * PAGE_SIZE


class _EndsTheJob(ProbeHandler):
    """Its first EXECUTE batch ends the job, as another worker's failure threshold would."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    async def execute(self, ctx, groups):  # type: ignore[no-untyped-def]
        self.batches += 1
        if self.batches == 1:
            await ctx.store.finish_job(ctx.job.id, JobState.FAILED, reason="ended elsewhere")
        return await super().execute(ctx, groups)


async def test_a_task_stops_at_its_next_checkpoint_once_its_job_ended_elsewhere(
    store: JobStore, local: LocalStorage, tmp_path: Path, owner: int
) -> None:
    fill(local.root, "b11", 2500)
    handler = _EndsTheJob()
    job = await create_job(store, owner, "b11", JobType.BATCH_REPLICATE)
    settings = _one_partition(tmp_path)
    async with running_workers(settings, store, local, handlers={JobType.BATCH_REPLICATE: handler}):
        final = await wait_for(store, job.id)
        await asyncio.sleep(0.3)  # a task still running would take its next batch now
    assert final.state is JobState.FAILED and final.failure_reasons == ["ended elsewhere"]
    assert handler.batches == 1 and len(handler.attempts) < 2500
