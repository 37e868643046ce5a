"""EXAMINING a big job in key ranges listed at once (``worker.examine_ranges``): every key
is counted exactly once, partitions tile the key space, a takeover of either kind of
range task resumes where its last commit left it; both job stores, the real local driver."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from objectjobs.engine import PAGE_SIZE
from objectjobs.errors import StorageError
from objectjobs.models import JobState, Phase, Task, TaskState
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion
from objectjobs.store.interface import JobStore

from .support import create_job, running_workers, wait_for
from .test_engine import fill
from .test_examine_planning import WORKER, CountingStorage, run_one, runner_for


class CallCountingStorage(CountingStorage):
    """Also counts listing calls, and can fail one of them outright."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls = 0
        self.fail_call: int | None = None

    async def list_objects(  # type: ignore[override]
        self, bucket: str, **kwargs: object
    ) -> AsyncIterator[list[ObjectVersion]]:
        self.calls += 1
        if self.calls == self.fail_call:
            raise StorageError("worker gone")
        async for page in super().list_objects(bucket, **kwargs):  # type: ignore[arg-type]
            yield page


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CallCountingStorage]:
    root = tmp_path / "counted"
    root.mkdir()
    storage = CallCountingStorage(root)
    yield storage
    await storage.close()


async def assert_tiled(store: JobStore, job_id: int) -> list[Task]:
    """The job's EXAMINE ranges and PROCESS partitions each cover the key space in order,
    without gap or overlap; the EXAMINE tasks."""
    examine = await store.list_tasks(job_id, Phase.EXAMINE)
    splits = examine[0].state_data.get("splits") or []
    assert [t.start_key for t in examine[1:]] == splits
    assert [t.end_key for t in examine[1:]] == [*splits[1:], None][: len(examine) - 1]
    partitions = [t for t in await store.list_tasks(job_id, Phase.PROCESS) if t.seq >= 0]
    assert partitions[0].start_key == "" and partitions[-1].end_key is None
    for before, after in itertools.pairwise(partitions):
        assert after.start_key == before.end_key  # no gap, no overlap
    return examine


async def finish(runner: object, store: JobStore) -> None:
    while await run_one(runner, store) is not None:  # type: ignore[arg-type]
        pass


async def test_a_big_job_is_examined_in_ranges_and_every_key_counted_once(
    store: JobStore, counting: CallCountingStorage, settings: Settings, owner: int
) -> None:
    total = fill(counting.root, "b1", 2500)
    job = await create_job(store, owner, "b1")
    runner = runner_for(settings, store, counting)

    assert await run_one(runner, store) is Phase.EXAMINE
    # the first range split the rest of the job after its first partition, and stays EXAMINING
    examining = await store.get_job(job.id)
    assert examining is not None and examining.state is JobState.EXAMINING
    assert examining.totals is None
    while (await run_one(runner, store)) is Phase.EXAMINE:
        pass
    # the one PROCESS task run: the open-ended last partition's (keys written after the
    # listing); every other partition was planned to its end while listed, so it was cut
    # done, with its EXECUTE task (METRIC: the one job-wide task)
    process = await store.list_tasks(job.id, Phase.PROCESS)
    assert [t.end_key for t in process if t.state is not TaskState.DONE] == []
    assert sum(t.attempts == 0 and t.lease_owner is not None for t in process) == 1
    assert len(await store.list_tasks(job.id, Phase.EXECUTE)) == 1
    await finish(runner, store)

    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    examine = await assert_tiled(store, job.id)
    assert 2 < len(examine) <= settings.worker.examine_ranges
    # every key listed once: each range planned while it listed, up to its end. The first
    # range, listing on up to its split, may have read one page ahead for nothing (the
    # local driver keeps no versions: no key is held back for the next page)
    assert 2500 <= counting.listed <= 2500 + PAGE_SIZE
    assert final.processed == 2500
    assert final.totals == {"objects": 2500, "bytes": total}
    usage = await store.get_usage("b1")
    assert usage is not None
    assert (usage.usage["currentObjects"], usage.usage["currentBytes"]) == (2500, total)


async def test_the_first_range_taken_over_after_its_split_keeps_the_same_ranges(
    store: JobStore, counting: CallCountingStorage, settings: Settings, owner: int
) -> None:
    total = fill(counting.root, "b1", 2500)
    job = await create_job(store, owner, "b1")
    runner = runner_for(settings, store, counting)
    counting.fail_call = 2  # the first listing splits; listing on up to the split dies
    task = await store.claim_task(WORKER, 30.0)
    assert task is not None and task.phase is Phase.EXAMINE
    with pytest.raises(StorageError):
        await runner.run(task)
    (crashed,) = [t for t in await store.list_tasks(job.id, Phase.EXAMINE) if t.seq == 0]
    splits = crashed.state_data["splits"]
    ranges = await store.list_tasks(job.id, Phase.EXAMINE)
    assert len(ranges) == 1 + len(splits)
    await store.release_task(task.id, WORKER, retry_in_s=0)

    # the files change before the takeover: the ranges were committed, not guessed again
    for i in range(30):
        (counting.root / "b1" / f"a{i:02d}").mkdir()
    await finish(runner, store)
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    examine = await assert_tiled(store, job.id)
    assert examine[0].state_data["splits"] == splits and len(examine) == len(ranges)
    assert final.processed == 2500 and final.totals == {"objects": 2500, "bytes": total}


async def test_a_range_taken_over_mid_listing_resumes_at_its_last_checkpoint(
    store: JobStore, counting: CallCountingStorage, settings: Settings, owner: int
) -> None:
    total = fill(counting.root, "b1", 5000)
    settings.worker.examine_ranges = 2  # the second range: three pages of keys
    job = await create_job(store, owner, "b1")
    runner = runner_for(settings, store, counting)
    assert await run_one(runner, store) is Phase.EXAMINE  # the first range, whole
    listed_by_first = counting.listed

    counting.fail_after_pages = 1  # one page counted and committed, then the listing dies
    second = await store.claim_task(WORKER, 30.0)
    assert second is not None and (second.phase, second.seq) == (Phase.EXAMINE, 1)
    with pytest.raises(StorageError):
        await runner.run(second)
    cut = [t for t in await store.list_tasks(job.id, Phase.PROCESS) if t.seq >= 1_000_000]
    assert [t.seq for t in cut] == [1_000_000, 1_000_001]  # 1,000 keys: two of 400 cut
    await store.release_task(second.id, WORKER, retry_in_s=0)

    counting.fail_after_pages = None
    await finish(runner, store)
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    await assert_tiled(store, job.id)
    # nothing listed again but at most the page read ahead at the first range's split, as
    # above (no version-holding key is held back at the crash or the split)
    assert 5000 <= counting.listed <= 5000 + PAGE_SIZE
    assert listed_by_first < 5000
    assert final.processed == 5000 and final.totals == {"objects": 5000, "bytes": total}


@pytest.mark.parametrize("poll_s", [0.05, 60.0])
async def test_ranges_are_examined_by_several_workers_at_once(
    store: JobStore, counting: CallCountingStorage, settings: Settings, owner: int, poll_s: float
) -> None:
    # polling every minute, the worker that found nothing to claim at its start joins
    # only because the other's split wakes it (objectjobs.wakeups)
    settings.worker.poll_s = poll_s
    fill(counting.root, "b1", 3000)
    job = await create_job(store, owner, "b1")
    slow = SlowListing(counting.root)
    async with running_workers(settings, store, slow, count=2) as workers:
        final = await wait_for(store, job.id)
    await slow.close()
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert final.processed == 3000
    examine = await assert_tiled(store, job.id)
    assert {t.lease_owner for t in examine} == {w.worker_id for w in workers}


class SlowListing(CountingStorage):
    """Listing pages take a tenth of a second each, as a remote listing would."""

    async def list_objects(  # type: ignore[override]
        self, bucket: str, **kwargs: object
    ) -> AsyncIterator[list[ObjectVersion]]:
        async for page in super().list_objects(bucket, **kwargs):  # type: ignore[arg-type]
            await asyncio.sleep(0.1)
            yield page


class ListingsInFlight(SlowListing):
    """Slow listings that count how many run at once; declaring how many are worth it."""

    def __init__(self, root: Path, listings_per_process: int) -> None:
        super().__init__(root)
        self.capabilities = dataclasses.replace(
            self.capabilities, listings_per_process=listings_per_process
        )
        self.in_flight = self.most = 0

    async def list_objects(  # type: ignore[override]
        self, bucket: str, **kwargs: object
    ) -> AsyncIterator[list[ObjectVersion]]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            async for page in super().list_objects(bucket, **kwargs):
                yield page
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("listings_per_process", [1, 0])
async def test_a_worker_runs_no_more_listings_at_once_than_its_storage_declares(
    store: JobStore, settings: Settings, owner: int, tmp_path: Path, listings_per_process: int
) -> None:
    # the local driver declares one: a second local listing in one process only slows
    # both (the GIL); the other ranges wait for this worker or go to other processes
    root = tmp_path / "inflight"
    root.mkdir()
    fill(root, "b1", 3000)
    storage = ListingsInFlight(root, listings_per_process)
    one_process = settings.model_copy(
        update={"worker": settings.worker.model_copy(update={"processes": 1})}
    )
    job = await create_job(store, owner, "b1")
    async with running_workers(one_process, store, storage):
        final = await wait_for(store, job.id)
    await storage.close()
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert final.processed == 3000
    examine = await assert_tiled(store, job.id)
    assert len(examine) > 2
    if listings_per_process:
        assert storage.most == listings_per_process
    else:
        assert storage.most > 1  # the ranges listed at once, as a remote store's are
