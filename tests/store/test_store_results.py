"""Conformance: results, failed keys, usage records, ledgers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from objectjobs.errors import InvalidRequest
from objectjobs.models import JobState, JobType, Outcome, Progress, ResultRecord, User
from objectjobs.store.sql import SqlJobStore
from tests.store.conftest import make_job


async def record(
    store: SqlJobStore, job_id: int, results: list[ResultRecord], *, finish: bool = True
) -> None:
    """Record ``results`` for ``job_id`` (its EXAMINE task must be the next claimable)."""
    task = await store.claim_task("w", 30)
    assert task is not None and task.job_id == job_id
    await store.checkpoint(task.id, "w", key=None, progress=Progress(), results=results)
    if finish:
        await store.finish_job(job_id, JobState.COMPLETE)


def res(key: str, outcome: Outcome, version: str | None = None) -> ResultRecord:
    return ResultRecord(
        key, version, "copy", outcome, "AccessDenied" if outcome is Outcome.FAILED else None
    )


async def test_results_paging_and_outcome_filter(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    outcomes = [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED]
    written = [res(f"key-{i:03d}", outcomes[i % 3]) for i in range(25)]
    await record(store, job.id, written, finish=False)
    other = await make_job(store, user, "other")
    await record(store, other.id, [res("elsewhere", Outcome.FAILED)])

    paged, after = [], None
    while True:
        page = await store.list_results(job.id, after=after, limit=10)
        paged += page
        if len(page) < 10:
            break
        after = page[-1][0]
    assert [r for _, r in paged] == written
    failed = await store.list_results(job.id, outcome="FAILED", limit=3)
    assert [r.key for _, r in failed] == [r.key for r in written if r.outcome is Outcome.FAILED][:3]
    rest = await store.list_results(job.id, outcome="FAILED", after=failed[-1][0])
    assert len(failed) + len(rest) == sum(r.outcome is Outcome.FAILED for r in written)
    assert all(r.outcome is Outcome.FAILED for _, r in rest)
    assert await store.list_results(job.id, after=paged[-1][0]) == []
    with pytest.raises(InvalidRequest):
        await store.list_results(job.id, outcome="BROKEN")


async def test_a_large_checkpoint_keeps_every_result_in_order(
    store: SqlJobStore, user: User
) -> None:
    """On SQLite a checkpoint's results go in as multi-row INSERTs of at most 999 bound
    values: rows on both sides of each statement's boundary keep their order and fields."""
    job = await make_job(store, user)
    outcomes = [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED]
    written = [
        ResultRecord(
            f"k{i:04d}",
            f"v{i}" if i % 3 == 0 else None,
            "expire" if i % 2 else "deleteVersion",
            outcomes[i % 3],
            "SlowDown" if outcomes[i % 3] is Outcome.FAILED else None,
            f"m{i}" if i % 5 else None,
        )
        for i in range(300)
    ]
    executemany: list[bool] = []

    @event.listens_for(store._db.engine, "before_cursor_execute")
    def seen(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO results"):
            executemany.append(many)

    await record(store, job.id, written)
    assert [r for _, r in await store.list_results(job.id, limit=1000)] == written
    # SQLite: 142 + 142 + 16 rows, one statement each; PostgreSQL: one executemany
    assert executemany == ([False] * 3 if store._db.sqlite else [True])


async def test_failed_keys(store: SqlJobStore, user: User) -> None:
    first = await make_job(store, user, "b")
    await record(
        store,
        first.id,
        [
            res("a", Outcome.FAILED, "v1"),
            res("a", Outcome.FAILED, "v2"),
            res("b", Outcome.FAILED),
            res("c", Outcome.SUCCEEDED),
            res("d", Outcome.FAILED),
        ],
    )
    second = await make_job(store, user, "b")
    await record(
        store,
        second.id,
        [
            res("a", Outcome.SUCCEEDED, "v1"),
            res("d", Outcome.SKIPPED),
            res("c", Outcome.FAILED),
            res("b", Outcome.FAILED),
        ],
    )
    # other bucket and other type do not count
    elsewhere = await make_job(store, user, "other")
    await record(store, elsewhere.id, [res("x", Outcome.FAILED)])
    lifecycle = await make_job(store, user, "b", job_type=JobType.LIFECYCLE_UPDATE)
    await record(store, lifecycle.id, [res("y", Outcome.FAILED), res("b", Outcome.SUCCEEDED)])

    assert await store.failed_keys("b", "BATCH_REPLICATE") == {
        ("a", "v2"),
        ("b", None),
        ("c", None),
    }
    assert await store.failed_keys("b", "LIFECYCLE_UPDATE") == {("y", None)}
    assert await store.failed_keys("nothing", "BATCH_REPLICATE") == set()


async def test_usage(store: SqlJobStore, user: User) -> None:
    assert await store.get_usage("b") is None
    assert await store.list_usage() == []
    job = await make_job(store, user, "b", job_type=JobType.METRIC_RECONCILIATION)
    before = datetime.now(UTC)
    first = await store.put_usage(
        "b",
        {"currentObjects": 3, "byStorageClass": {"STANDARD": {"objects": 3, "bytes": 30}}},
        job.id,
    )
    assert await store.get_usage("b") == first
    assert first.job_id == job.id and first.update_time >= before - timedelta(seconds=1)
    second = await store.put_usage("b", {"currentObjects": 4}, None)
    third = await store.put_usage("a", {"currentObjects": 0}, None)
    assert await store.get_usage("b") == second
    assert await store.list_usage() == [third, second]


async def test_ledger(store: SqlJobStore) -> None:
    keys = [f"bucket/k{i}" for i in range(1200)]  # more than one IN-list chunk
    assert await store.ledger_missing("events", keys[:3]) == set(keys[:3])
    await store.ledger_add("events", keys[:700])
    await store.ledger_add("events", keys[:10])  # idempotent
    assert await store.ledger_missing("events", keys) == set(keys[700:])
    assert await store.ledger_missing("other", keys[:2]) == set(keys[:2])
    await store.ledger_add("events", ["Bucket/X", "bucket%/y", "bucket_z"])
    await store.ledger_clear("events", "bucket/k1")
    # case-sensitive prefix, % and _ are not wildcards
    assert await store.ledger_missing(
        "events", ["bucket/k1", "bucket/k10", "bucket/k2", "Bucket/X", "bucket%/y", "bucket_z"]
    ) == {"bucket/k1", "bucket/k10"}
    await store.ledger_clear("events", "bucket%")
    assert await store.ledger_missing("events", ["bucket%/y", "bucket_z"]) == {"bucket%/y"}
    await store.ledger_clear("events")
    assert await store.ledger_missing("events", ["bucket/k2", "bucket_z"]) == {
        "bucket/k2",
        "bucket_z",
    }
    assert await store.ledger_missing("events", []) == set()
