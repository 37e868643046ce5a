"""Engine tests run on both job stores (SQLite file, real PostgreSQL) over real storage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from objectjobs.models import JobRecord, JobState, JobType, NewJob
from objectjobs.settings import Settings, load_settings
from objectjobs.storage.interface import Storage
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore
from objectjobs.store.sql import SqlJobStore
from objectjobs.worker import Worker


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    db = SqlJobStore(url)
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path,
        worker={
            "lease_s": 3.0,
            "heartbeat_s": 0.5,
            "poll_s": 0.05,
            "partition_objects": 400,
            "retry_base_s": 0.01,
            "concurrency": 16,
        },
    )


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalStorage]:
    root = tmp_path / "buckets"
    root.mkdir()
    storage = LocalStorage(root)
    yield storage
    await storage.close()


@pytest.fixture
async def owner(store: JobStore) -> int:
    user = await store.create_user("tester", "admin", "x")
    return user.id


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
    timeout: float = 60.0,
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


def ended(job: JobRecord) -> bool:
    return job.state in (JobState.COMPLETE, JobState.FAILED, JobState.CANCELLED)
