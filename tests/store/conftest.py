"""The job store conformance suite runs every test against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from objectjobs.models import JobRecord, JobType, NewJob, User
from objectjobs.store.sql import SqlJobStore


class Clock:
    """Real UTC time unless a test freezes it (to make equal start times, for example)."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now(UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    url: str = request.getfixturevalue("postgres_server").create_database()
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(store_url: str, clock: Clock) -> AsyncIterator[SqlJobStore]:
    s = SqlJobStore(store_url, clock=clock)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def user(store: SqlJobStore) -> User:
    return await store.create_user("alice", "operator", "hash-a")


@pytest.fixture
async def other_user(store: SqlJobStore) -> User:
    return await store.create_user("bob", "operator", "hash-b")


async def make_job(
    store: SqlJobStore,
    owner: User,
    bucket: str = "bucket",
    *,
    job_type: JobType = JobType.BATCH_REPLICATE,
    prefix: str = "",
    key: str | None = None,
) -> JobRecord:
    job, created = await store.create_job(
        NewJob(
            job_type=job_type,
            bucket=bucket,
            params={"destination": "dst"},
            owner_id=owner.id,
            prefix=prefix,
            idempotency_key=key,
        )
    )
    assert created
    return job
