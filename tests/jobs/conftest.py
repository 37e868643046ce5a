"""Fixtures of the job tests: both job stores (SQLite file, real PostgreSQL), real storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from objectjobs.settings import Settings, load_settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore
from objectjobs.store.sql import SqlJobStore


async def _opened(url: str) -> AsyncIterator[JobStore]:
    db = SqlJobStore(url)
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    async for db in _opened(url):
        yield db


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    """SQLite only, for modules whose subject is not the job store (they alias it as
    ``store``; the engine and the store suite run on PostgreSQL too)."""
    async for db in _opened(f"sqlite:///{tmp_path / 'jobs.db'}"):
        yield db


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
