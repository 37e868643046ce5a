"""Keyset paging of jobs/list under concurrent creation (SPEC §2.5), on SQLite and PostgreSQL.

The store's clock is coarsened to whole seconds so many jobs share a start time and the
id tie-break is exercised, not just the time order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from objectjobs.models import JobType, NewJob
from tests.api.conftest import Api

_bucket_names = itertools.count()


def _coarse_clock() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _check_paging(api: Api, initial: int, page_size: int, concurrent: int) -> None:
    bucket = f"page{next(_bucket_names)}"
    await api.storage.create_bucket(bucket)
    owner = api.users["oper"].id
    prefixes = itertools.count()

    async def create() -> int:
        job, _ = await api.store.create_job(
            NewJob(JobType.METRIC_RECONCILIATION, bucket, {}, owner, prefix=f"x{next(prefixes)}/")
        )
        return job.id

    existing = {await create() for _ in range(initial)}
    created_during: list[int] = []

    async def keep_creating() -> None:
        for _ in range(concurrent):
            created_during.append(await create())
            await asyncio.sleep(0)

    async def page_through() -> list[int]:
        seen: list[int] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {"bucketName": bucket, "pageSize": page_size}
            if token is not None:
                body["pageToken"] = token
            r = await api.post("/jobs/list", body, user="oper")
            assert r.status_code == 200, r.text
            page = [j["jobId"]["id"] for j in r.json()["jobs"]]
            assert len(page) <= page_size
            seen += page
            # a cursor that does not advance would page forever: fail instead
            assert len(seen) <= initial + concurrent, "paging returned more jobs than exist"
            token = r.json()["pageToken"]
            if token is None:
                return seen

    seen, _ = await asyncio.gather(page_through(), keep_creating())
    # every job that existed at the start exactly once; nothing twice
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)
    assert set(seen) <= existing | set(created_during)
    # newest first: strictly descending (start_time, id) over all pages
    order = []
    for job_id in seen:
        record = await api.store.get_job(job_id)
        assert record is not None
        order.append((record.start_time, record.id))
    assert order == sorted(order, reverse=True)


_PAGING = dict(
    initial=st.integers(min_value=0, max_value=40),
    page_size=st.integers(min_value=1, max_value=50),
    concurrent=st.integers(min_value=0, max_value=15),
)
_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
async def sqlite_api(make_api: Callable[..., Any]) -> Api:
    api: Api = await make_api(clock=_coarse_clock)
    return api


@pytest.fixture
async def postgres_api(make_api: Callable[..., Any], postgres_server: Any) -> Api:
    api: Api = await make_api(database_url=postgres_server.create_database(), clock=_coarse_clock)
    return api


@_SETTINGS
@given(**_PAGING)
async def test_paging_sqlite(
    sqlite_api: Api, initial: int, page_size: int, concurrent: int
) -> None:
    await _check_paging(sqlite_api, initial, page_size, concurrent)


@pytest.mark.postgres
@_SETTINGS
@given(**_PAGING)
async def test_paging_postgres(
    postgres_api: Api, initial: int, page_size: int, concurrent: int
) -> None:
    await _check_paging(postgres_api, initial, page_size, concurrent)
