"""Conformance: jobs, users, settings (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from objectjobs.errors import (
    DuplicateActiveJob,
    InvalidRequest,
    JobNotFound,
    JobStoreError,
    NotCancellable,
    NotFound,
)
from objectjobs.models import JobState, JobType, NewJob, Phase, TaskState, User
from objectjobs.store.interface import JobCursor
from objectjobs.store.sql import SqlJobStore
from tests.store.conftest import Clock, make_job


async def test_create_job(store: SqlJobStore, user: User) -> None:
    before = datetime.now(UTC)
    job, created = await store.create_job(
        NewJob(
            job_type=JobType.LIFECYCLE_UPDATE,
            bucket="b1",
            params={"dryRun": "true"},
            owner_id=user.id,
            prefix="logs/",
        )
    )
    assert created
    assert job.state is JobState.EXAMINING
    assert job.job_type is JobType.LIFECYCLE_UPDATE
    assert (job.bucket, job.params, job.owner_id, job.owner_name) == (
        "b1",
        {"dryRun": "true"},
        user.id,
        "alice",
    )
    assert job.start_time == job.create_time
    assert job.start_time.tzinfo is not None and job.start_time.utcoffset() == timedelta(0)
    assert before <= job.start_time <= datetime.now(UTC)
    assert job.complete_time is None
    assert (job.processed, job.failed, job.skipped, job.bytes_done) == (0, 0, 0, 0)
    assert job.failure_reasons == [] and job.totals is None and job.plan is None
    assert await store.get_job(job.id) == job
    [task] = await store.list_tasks(job.id)
    assert (task.phase, task.seq, task.start_key, task.end_key, task.state) == (
        Phase.EXAMINE,
        0,
        "",
        None,
        TaskState.PENDING,
    )
    assert await store.get_job(job.id + 1 if job.id != -1 else 1) is None


async def test_job_ids_are_random_signed_int32(store: SqlJobStore, user: User) -> None:
    made = [await make_job(store, user, f"bucket-{i}") for i in range(120)]
    ids = [j.id for j in made]
    assert len(set(ids)) == len(ids)
    assert all(-(2**31) <= i < 2**31 and i != 0 for i in ids)
    # with 120 random draws, both signs (and no monotone sequence) appear
    assert any(i < 0 for i in ids) and any(i > 0 for i in ids)
    assert ids != sorted(ids)


async def test_time_microseconds_round_trip(store: SqlJobStore, user: User, clock: Clock) -> None:
    clock.frozen = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)
    job = await make_job(store, user)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.start_time == clock.frozen
    assert stored.start_time.tzinfo is not None


async def test_duplicate_active_guard(store: SqlJobStore, user: User, other_user: User) -> None:
    first = await make_job(store, user, "b")
    with pytest.raises(DuplicateActiveJob) as e:
        await make_job(store, other_user, "b")
    assert e.value.job_id == first.id
    # other prefix, other type, other bucket are independent
    await make_job(store, user, "b", prefix="p/")
    await make_job(store, user, "b", job_type=JobType.LIFECYCLE_UPDATE)
    await make_job(store, user, "c")
    # an ended job no longer blocks
    await store.finish_job(first.id, JobState.COMPLETE)
    second = await make_job(store, user, "b")
    await store.request_cancel(second.id)
    await make_job(store, user, "b")


async def test_duplicate_guard_is_atomic(store: SqlJobStore, user: User) -> None:
    outcomes = await asyncio.gather(
        *(
            store.create_job(NewJob(JobType.BATCH_REPLICATE, "race", {}, user.id))
            for _ in range(12)
        ),
        return_exceptions=True,
    )
    created = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if isinstance(o, DuplicateActiveJob)]
    assert len(created) == 1 and len(refused) == 11
    assert {r.job_id for r in refused} == {created[0][0].id}


async def test_idempotency_key(store: SqlJobStore, user: User, other_user: User) -> None:
    req = NewJob(JobType.BATCH_REPLICATE, "b", {"a": "1"}, user.id, idempotency_key="k1")
    job, created = await store.create_job(req)
    again, created_again = await store.create_job(req)
    assert created and not created_again and again == job
    # still answered after the job ended (a retry must not create a second job)
    await store.finish_job(job.id, JobState.COMPLETE)
    late, late_created = await store.create_job(req)
    assert late.id == job.id and not late_created
    # the key is per owner
    theirs, theirs_created = await store.create_job(
        NewJob(JobType.BATCH_REPLICATE, "b", {}, other_user.id, idempotency_key="k1")
    )
    assert theirs_created and theirs.id != job.id


async def test_idempotency_key_concurrent(store: SqlJobStore, user: User) -> None:
    req = NewJob(JobType.BATCH_REPLICATE, "b", {}, user.id, idempotency_key="same")
    outcomes = await asyncio.gather(*(store.create_job(req) for _ in range(8)))
    assert len({job.id for job, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1


async def test_create_for_unknown_owner_fails(store: SqlJobStore) -> None:
    with pytest.raises(JobStoreError):
        await store.create_job(NewJob(JobType.BATCH_REPLICATE, "b", {}, owner_id=4242))


async def test_list_newest_first_ties_by_id(store: SqlJobStore, user: User, clock: Clock) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    made = []
    for i in range(12):
        clock.frozen = base + timedelta(seconds=i // 4)  # groups of 4 equal start times
        made.append(await make_job(store, user, f"b{i}"))
    listed = await store.list_jobs()
    expected = sorted(made, key=lambda j: (j.start_time, j.id), reverse=True)
    assert [j.id for j in listed] == [j.id for j in expected]
    # pages of 5 (cutting through tie groups) give the same sequence
    paged, after = [], None
    while True:
        page = await store.list_jobs(after=after, limit=5)
        paged += page
        if len(page) < 5:
            break
        after = JobCursor(page[-1].start_time, page[-1].id)
    assert [j.id for j in paged] == [j.id for j in expected]


async def test_list_filters(store: SqlJobStore, user: User, other_user: User) -> None:
    a1 = await make_job(store, user, "x")
    b1 = await make_job(store, other_user, "x", prefix="p")
    a2 = await make_job(store, user, "y")
    assert [j.id for j in await store.list_jobs(owner_id=user.id)] == [a2.id, a1.id]
    assert [j.id for j in await store.list_jobs(bucket="x")] == [b1.id, a1.id]
    assert [j.id for j in await store.list_jobs(owner_id=other_user.id, bucket="x")] == [b1.id]
    assert await store.list_jobs(owner_id=other_user.id, bucket="y") == []
    assert [j.owner_name for j in await store.list_jobs()] == ["alice", "bob", "alice"]
    cursor = JobCursor(a2.start_time, a2.id)
    assert [j.id for j in await store.list_jobs(owner_id=user.id, after=cursor)] == [a1.id]


async def test_keyset_paging_exact_under_concurrent_inserts(store: SqlJobStore, user: User) -> None:
    original = {(await make_job(store, user, f"old{i}")).id for i in range(30)}
    seen: list[int] = []
    after: JobCursor | None = None
    extra = 0
    last: tuple[datetime, int] | None = None
    while True:
        page = await store.list_jobs(after=after, limit=7)
        for j in page:
            key = (j.start_time, j.id)
            assert last is None or key < last  # strictly descending
            last = key
        seen += [j.id for j in page]
        # new jobs arrive between pages (and concurrently with the next page)
        adding = asyncio.gather(*(make_job(store, user, f"new{extra + k}") for k in range(3)))
        extra += 3
        if len(page) < 7:
            await adding
            break
        after = JobCursor(page[-1].start_time, page[-1].id)
        await adding
    assert len(seen) == len(set(seen))
    assert original <= set(seen)


async def test_cancel_rules(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user, "c1")
    cancelled = await store.request_cancel(job.id)
    assert cancelled.state is JobState.CANCELLED and cancelled.complete_time is not None
    assert cancelled.cancel_requested
    assert all(t.state is TaskState.DONE for t in await store.list_tasks(job.id))
    assert await store.claim_task("w", 5) is None
    assert await store.request_cancel(job.id) == cancelled  # idempotent
    done = await make_job(store, user, "c2")
    await store.finish_job(done.id, JobState.COMPLETE)
    failed = await make_job(store, user, "c3")
    await store.finish_job(failed.id, JobState.FAILED, reason="bucket gone")
    for ended in (done, failed):
        with pytest.raises(NotCancellable):
            await store.request_cancel(ended.id)
    with pytest.raises(JobNotFound):
        await store.request_cancel(12345)


async def test_finish_and_update_job(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    await store.update_job(
        job.id,
        totals={"objects": 5, "bytes": 50},
        plan={"copy": {"objects": 4, "bytes": 40}},
        rate=2.5,
        add_failure_reason="first",
    )
    await store.update_job(
        job.id, usage={"after": {"currentObjects": 1}}, add_failure_reason="second"
    )
    got = await store.get_job(job.id)
    assert got is not None
    assert got.totals == {"objects": 5, "bytes": 50}
    assert got.plan == {"copy": {"objects": 4, "bytes": 40}}
    assert got.rate == 2.5 and got.usage == {"after": {"currentObjects": 1}}
    assert got.failure_reasons == ["first", "second"]
    failed = await store.finish_job(job.id, JobState.FAILED, reason="third")
    assert failed.state is JobState.FAILED and failed.complete_time is not None
    assert failed.failure_reasons == ["first", "second", "third"]
    # an ended job is returned unchanged
    assert await store.finish_job(job.id, JobState.COMPLETE, reason="x") == failed
    with pytest.raises(JobNotFound):
        await store.update_job(777, rate=1.0)
    with pytest.raises(JobNotFound):
        await store.finish_job(777, JobState.COMPLETE)


async def test_count_jobs(store: SqlJobStore, user: User) -> None:
    assert await store.count_jobs() == {}
    a = await make_job(store, user, "a")
    await make_job(store, user, "b")
    await make_job(store, user, "c", job_type=JobType.METRIC_RECONCILIATION)
    await store.request_cancel(a.id)
    assert await store.count_jobs() == {
        ("BATCH_REPLICATE", "CANCELLED"): 1,
        ("BATCH_REPLICATE", "EXAMINING"): 1,
        ("METRIC_RECONCILIATION", "EXAMINING"): 1,
    }


async def test_users(store: SqlJobStore) -> None:
    alice = await store.create_user("alice", "admin", "h1")
    bob = await store.create_user("bob", "viewer", "h2")
    assert alice.id != bob.id and alice.created_at.tzinfo is not None
    with pytest.raises(InvalidRequest):
        await store.create_user("alice", "viewer", "h3")
    assert await store.get_user(alice.id) == alice
    assert await store.get_user_by_name("bob") == bob
    assert await store.get_user_by_name("carol") is None
    assert await store.get_user(999) is None
    assert await store.list_users() == [alice, bob]
    await store.set_password(bob.id, "h4")
    changed = await store.get_user(bob.id)
    assert changed is not None and changed.password_hash == "h4"
    with pytest.raises(NotFound):
        await store.set_password(999, "h5")


async def test_settings_first_writer_wins(store: SqlJobStore) -> None:
    values = await asyncio.gather(
        *(store.get_or_create_setting("serial", f"v{i}") for i in range(10))
    )
    assert len(set(values)) == 1 and values[0].startswith("v")
    assert await store.get_or_create_setting("serial", "other") == values[0]
    assert await store.get_or_create_setting("secret", "s") == "s"


async def test_ping(store: SqlJobStore) -> None:
    await store.ping()


async def test_two_store_instances_write_at_once(
    store: SqlJobStore, user: User, store_url: str
) -> None:
    """Like the CLI adding users next to a running server: no "database is locked"."""
    cli = SqlJobStore(store_url)
    try:
        made = await asyncio.gather(
            *(make_job(store, user, f"b{i}") for i in range(15)),
            *(cli.create_user(f"user{i}", "viewer", "h") for i in range(15)),
        )
    finally:
        await cli.close()
    assert len(made) == 30
    assert len(await store.list_users()) == 16
    assert len(await store.list_jobs()) == 15
