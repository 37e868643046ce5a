"""EXAMINING cuts partitions resumably, and a counting job (METRIC_RECONCILIATION) plans
while it examines, so the bucket is listed once; both job stores, the real local driver."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from objectjobs.engine import TaskRunner
from objectjobs.errors import StorageError
from objectjobs.models import JobState, JobType, Phase
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion, Storage
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore

from .probe import ProbeHandler
from .support import create_job
from .test_engine import fill

WORKER = "test-worker"


class CountingStorage(LocalStorage):
    """The local driver, counting the entries its listings hand out; it can be told to fail
    a listing after some pages, as a worker crashing mid-listing would stop."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.listed = 0
        self.fail_after_pages: int | None = None

    async def list_objects(  # type: ignore[override]
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
        etags: bool = True,
    ) -> AsyncIterator[list[ObjectVersion]]:
        # every listing of the local driver (versions, sized versions) is this one
        pages = 0
        async for page in super().list_objects(
            bucket,
            prefix=prefix,
            start_after=start_after,
            end_key=end_key,
            page_size=page_size,
            etags=etags,
        ):
            if self.fail_after_pages is not None and pages >= self.fail_after_pages:
                raise StorageError("worker gone")
            pages += 1
            self.listed += len(page)
            yield page


@pytest.fixture
async def counting(tmp_path: Path) -> AsyncIterator[CountingStorage]:
    root = tmp_path / "counted"
    root.mkdir()
    storage = CountingStorage(root)
    yield storage
    await storage.close()


async def run_one(runner: TaskRunner, store: JobStore) -> Phase | None:
    task = await store.claim_task(WORKER, 30.0)
    if task is None:
        return None
    await runner.run(task)
    return task.phase


def runner_for(settings: Settings, store: JobStore, storage: Storage) -> TaskRunner:
    return TaskRunner(settings, store, storage, lambda name: storage, WORKER)


async def test_a_count_lists_the_bucket_once_and_still_counts_keys_written_after(
    store: JobStore, counting: CountingStorage, settings: Settings, owner: int
) -> None:
    total = fill(counting.root, "b1", 1000)
    job = await create_job(store, owner, "b1")
    runner = runner_for(settings, store, counting)

    assert await run_one(runner, store) is Phase.EXAMINE
    examined = await store.get_job(job.id)
    assert examined is not None and examined.state is JobState.PROCESSING
    # counted while listing: progress is visible after EXAMINING, and nothing listed twice
    assert counting.listed == 1000 and examined.processed == 1000
    partitions = await store.list_tasks(job.id, Phase.PROCESS)
    assert [t.end_key is None for t in partitions] == [False, False, True]

    # written after the listing passed the end: only the open-ended last partition holds them
    for i in range(5):
        await counting.put("b1", f"zz/late-{i}", b"late!")
    while await run_one(runner, store) is not None:
        pass
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    assert counting.listed == 1005, "PROCESSING listed more than the keys written late"
    assert final.processed == 1005
    usage = await store.get_usage("b1")
    assert usage is not None
    assert usage.usage["currentObjects"] == 1005
    assert usage.usage["currentBytes"] == total + 25
    assert final.plan == {"count": {"objects": 1005, "bytes": total + 25}}


@pytest.mark.parametrize("versioned", [False, True], ids=["one-version-store", "versioned"])
async def test_an_examine_taken_over_mid_listing_resumes_at_its_last_checkpoint(
    store: JobStore, counting: CountingStorage, settings: Settings, owner: int, versioned: bool
) -> None:
    if versioned:
        # declared as a store that keeps versions: a key's versions may then go on in the
        # next page, so the listing holds each page's last key back until it has seen it
        counting.capabilities = dataclasses.replace(counting.capabilities, versioning=True)
    held_back = 1 if versioned else 0
    total = fill(counting.root, "b1", 2500)
    # one range: this is about the cut within it (test_examine_ranges: several ranges)
    settings.worker.examine_ranges = 1
    job = await create_job(store, owner, "b1")
    runner = runner_for(settings, store, counting)

    counting.fail_after_pages = 2  # two pages of 1000 checkpointed, then the listing dies
    task = await store.claim_task(WORKER, 30.0)
    assert task is not None and task.phase is Phase.EXAMINE
    with pytest.raises(StorageError):
        await runner.run(task)
    assert counting.listed == 2000
    cut = await store.list_tasks(job.id, Phase.PROCESS)
    # checkpointed: all 2,000 keys on a store without versions (no key of a page can have
    # more of them in the next page), 1,999 on a versioned one (the page's last key waits
    # for the next page); the partitions of 400 among them committed with the checkpoints
    partitions_cut = 5 if not versioned else 4
    assert [t.seq for t in cut] == list(range(partitions_cut))
    assert [t.objects for t in cut] == [400] * partitions_cut
    halfway = await store.get_job(job.id)
    assert halfway is not None and halfway.processed == 2000 - held_back
    await store.release_task(task.id, WORKER, retry_in_s=0)

    counting.fail_after_pages = None
    assert await run_one(runner, store) is Phase.EXAMINE
    # resumed after the last checkpointed key: only a held-back key is listed again
    assert counting.listed == 2000 + 500 + held_back, (
        "the resumed EXAMINING listed again what it had done"
    )
    partitions = await store.list_tasks(job.id, Phase.PROCESS)
    assert [t.seq for t in partitions] == list(range(len(partitions)))
    for before, after in itertools.pairwise(partitions):
        assert after.start_key == before.end_key  # no gap, no overlap
    assert partitions[0].start_key == "" and partitions[-1].end_key is None
    assert sum(t.objects for t in partitions) == 2500

    while await run_one(runner, store) is not None:
        pass
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    assert final.processed == 2500 and final.totals == {"objects": 2500, "bytes": total}
    usage = await store.get_usage("b1")
    assert usage is not None and usage.usage["currentObjects"] == 2500
    assert usage.usage["currentBytes"] == total


async def test_a_handler_that_plans_in_processing_lists_each_partition_again(
    store: JobStore, counting: CountingStorage, settings: Settings, owner: int
) -> None:
    fill(counting.root, "b1", 900)
    job = await create_job(store, owner, "b1", dryRun="true")
    probe = ProbeHandler()  # plans_while_examining is False
    assert not probe.plans_while_examining
    probe.listing = "versions"
    runner = TaskRunner(
        settings,
        store,
        counting,
        lambda name: counting,
        WORKER,
        handlers={JobType.METRIC_RECONCILIATION: probe},
    )
    assert await run_one(runner, store) is Phase.EXAMINE
    examined = await store.get_job(job.id)
    assert examined is not None and examined.processed == 0
    assert all(t.checkpoint is None for t in await store.list_tasks(job.id, Phase.PROCESS))
    while await run_one(runner, store) is not None:
        pass
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    assert final.processed == 900
    assert counting.listed == 2 * 900


async def test_a_paced_count_knows_its_totals_before_it_counts(
    store: JobStore, counting: CountingStorage, settings: Settings, owner: int
) -> None:
    """With objectsPerSecond, EXAMINING lists at full speed (totals, progress bar and ETA
    early) and PROCESSING does the paced counting."""
    fill(counting.root, "b1", 900)
    job = await create_job(store, owner, "b1", objectsPerSecond="100000")
    runner = runner_for(settings, store, counting)
    assert await run_one(runner, store) is Phase.EXAMINE
    examined = await store.get_job(job.id)
    assert examined is not None and examined.totals is not None
    assert examined.totals["objects"] == 900 and examined.processed == 0
    assert all(t.checkpoint is None for t in await store.list_tasks(job.id, Phase.PROCESS))
    while await run_one(runner, store) is not None:
        pass
    final = await store.get_job(job.id)
    assert final is not None and final.state is JobState.COMPLETE, final.failure_reasons
    assert final.processed == 900 and counting.listed == 2 * 900
