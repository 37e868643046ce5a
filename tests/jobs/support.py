"""Helpers of the job tests: create a job, run in-process workers, wait for a state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from objectjobs.models import JobRecord, JobState, JobType, NewJob
from objectjobs.settings import Settings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from objectjobs.worker import Worker


async def create_job(
    store: JobStore,
    owner: int,
    bucket: str,
    job_type: JobType = JobType.METRIC_RECONCILIATION,
    **params: str,
) -> JobRecord:
    job, _ = await store.create_job(
        NewJob(job_type, bucket, dict(params), owner, prefix=params.get("prefix", ""))
    )
    return job


@contextlib.asynccontextmanager
async def running_workers(
    settings: Settings, store: JobStore, storage: Storage, count: int = 1, **kwargs: Any
) -> AsyncIterator[list[Worker]]:
    workers = [Worker(settings, store, storage, **kwargs) for _ in range(count)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield workers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for(
    store: JobStore,
    job_id: int,
    done: Callable[[JobRecord], bool] = lambda j: not j.state.active,
    timeout: float = 60.0,  # noqa: ASYNC109 - a deadline for polling, not an I/O timeout
) -> JobRecord:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await store.get_job(job_id)
        assert job is not None
        if done(job):
            return job
        if loop.time() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {timeout}s: {job}")
        await asyncio.sleep(0.02)


async def run_job(
    store: JobStore,
    owner: int,
    settings: Settings,
    storage: Storage,
    bucket: str,
    job_type: JobType,
    *,
    wait_s: float = 120.0,
    **params: str,
) -> JobRecord:
    """Create a job, run one in-process worker until it ends, and return its record."""
    job = await create_job(store, owner, bucket, job_type, **params)
    async with running_workers(settings, store, storage):
        return await wait_for(store, job.id, timeout=wait_s)


def ended(job: JobRecord) -> bool:
    return job.state in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED)
