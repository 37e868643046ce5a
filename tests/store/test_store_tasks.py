"""Conformance: leased tasks — claim, heartbeat, takeover, checkpoint, completion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from objectjobs.errors import LeaseLost
from objectjobs.models import (
    JobRecord,
    JobState,
    Outcome,
    Phase,
    Progress,
    ResultRecord,
    Task,
    TaskState,
    User,
)
from objectjobs.store.interface import JobCounters, NewTask
from objectjobs.store.sql import SqlJobStore
from tests.store.conftest import make_job


async def to_execute(store: SqlJobStore, job: JobRecord, n: int) -> None:
    """Walk ``job`` through EXAMINING and PROCESSING to EXECUTING with ``n`` EXECUTE tasks."""
    examine = await store.claim_task("setup", 30)
    assert examine is not None and examine.job_id == job.id
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(0, "", None)])
    assert await store.complete_task(examine.id, "setup", next_state=JobState.PROCESSING)
    process = await store.claim_task("setup", 30)
    assert process is not None and process.phase is Phase.PROCESS
    await store.add_tasks(
        job.id,
        Phase.EXECUTE,
        [NewTask(i, f"k{i}", f"k{i + 1}", objects=i, bytes=10 * i) for i in range(n)],
    )
    assert await store.complete_task(process.id, "setup", next_state=JobState.EXECUTING)


async def claim(store: SqlJobStore, worker: str, lease_s: float = 30) -> Task:
    task = await store.claim_task(worker, lease_s)
    assert task is not None
    return task


async def test_claim_and_lease(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    before = datetime.now(UTC)
    task = await claim(store, "w1", lease_s=60)
    assert (task.job_id, task.phase, task.state, task.lease_owner, task.attempts) == (
        job.id,
        Phase.EXAMINE,
        TaskState.RUNNING,
        "w1",
        0,
    )
    assert task.lease_until is not None
    assert (
        before + timedelta(seconds=59)
        < task.lease_until
        < datetime.now(UTC) + timedelta(seconds=61)
    )
    assert await store.claim_task("w2", 60) is None
    assert await store.list_tasks(job.id) == [task]


async def test_claim_oldest_job_first(store: SqlJobStore, user: User) -> None:
    jobs = [await make_job(store, user, f"b{i}") for i in range(4)]
    claimed = [(await claim(store, "w")).job_id for _ in jobs]
    assert claimed == [j.id for j in jobs]


async def test_only_tasks_of_the_current_phase_run(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    examine = await claim(store, "w")
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(0, "", "m"), NewTask(1, "m", None)])
    assert await store.claim_task("w2", 30) is None  # job is still EXAMINING
    assert await store.complete_task(examine.id, "w", next_state=JobState.PROCESSING)
    got = await store.get_job(job.id)
    assert got is not None and got.state is JobState.PROCESSING
    first, second = await claim(store, "a"), await claim(store, "b")
    assert {(first.phase, first.seq), (second.phase, second.seq)} == {
        (Phase.PROCESS, 0),
        (Phase.PROCESS, 1),
    }


async def test_claim_skips_the_phases_asked(store: SqlJobStore, user: User) -> None:
    # a worker that lists all it can (one local listing per process) claims past the
    # older job's EXAMINE tasks to the next job's PROCESS work, and the probe agrees
    older, newer = await make_job(store, user, "older"), await make_job(store, user, "newer")
    first = await claim(store, "w")
    assert first.job_id == older.id
    await store.add_tasks(older.id, Phase.EXAMINE, [NewTask(1, "m", None)])
    assert await store.claim_task("x", 30, skip_phases=(Phase.EXAMINE,)) is None
    examine_newer = await store.claim_task("x", 30, skip_phases=(Phase.PROCESS,))
    assert examine_newer is not None
    assert (examine_newer.job_id, examine_newer.phase, examine_newer.seq) == (
        older.id,
        Phase.EXAMINE,
        1,
    )  # the older job's range first: its phase not skipped
    second = await claim(store, "w")
    assert (second.job_id, second.phase) == (newer.id, Phase.EXAMINE)
    await store.add_tasks(newer.id, Phase.PROCESS, [NewTask(0, "", None)])
    assert await store.complete_task(second.id, "w", next_state=JobState.PROCESSING)
    await store.add_tasks(older.id, Phase.EXAMINE, [NewTask(2, "t", None)])
    process = await store.claim_task("y", 30, skip_phases=(Phase.EXAMINE,))
    assert process is not None and (process.job_id, process.phase) == (newer.id, Phase.PROCESS)
    assert await store.claim_task("y", 30, skip_phases=(Phase.EXAMINE,)) is None
    left = await store.claim_task("y", 30)
    assert left is not None and (left.job_id, left.phase, left.seq) == (older.id, Phase.EXAMINE, 2)


async def test_add_tasks_idempotent_and_listed_in_order(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    await store.add_tasks(job.id, Phase.EXECUTE, [NewTask(1, "b", None, 3, 30)])
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(0, "", "b")])
    await store.add_tasks(job.id, Phase.EXECUTE, [NewTask(0, "", "b"), NewTask(1, "x", "y", 9, 99)])
    listed = [
        (t.phase, t.seq, t.start_key, t.end_key, t.objects, t.bytes)
        for t in await store.list_tasks(job.id)
    ]
    assert listed == [
        (Phase.EXAMINE, 0, "", None, 0, 0),
        (Phase.PROCESS, 0, "", "b", 0, 0),
        (Phase.EXECUTE, 0, "", "b", 0, 0),
        (Phase.EXECUTE, 1, "b", None, 3, 30),  # the re-added seq 1 changed nothing
    ]
    assert [t.seq for t in await store.list_tasks(job.id, Phase.EXECUTE)] == [0, 1]


async def test_takeover_after_expiry(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    mine = await claim(store, "old", lease_s=0.2)
    assert await store.claim_task("new", 30) is None  # lease still valid
    await asyncio.sleep(0.3)
    taken = await claim(store, "new")
    assert (taken.id, taken.lease_owner, taken.attempts) == (mine.id, "new", 1)
    assert await store.heartbeat("old", [mine.id], 30) == {mine.id}
    with pytest.raises(LeaseLost):
        await store.checkpoint(
            mine.id,
            "old",
            key="zzz",
            progress=Progress(processed=5),
            state_data={"x": 1},
            results=[ResultRecord("k", None, "copy", Outcome.SUCCEEDED)],
        )
    # nothing of the refused checkpoint was written
    got = await store.get_job(job.id)
    assert got is not None and got.processed == 0
    assert await store.list_results(job.id) == []
    [task] = await store.list_tasks(job.id)
    assert task.checkpoint is None and task.state_data == {} and task.lease_owner == "new"
    with pytest.raises(LeaseLost):
        await store.complete_task(mine.id, "old", next_state=JobState.COMPLETE)
    assert await store.heartbeat("new", [mine.id], 30) == set()


async def test_heartbeat_extends_lease(store: SqlJobStore, user: User) -> None:
    await make_job(store, user)
    task = await claim(store, "w", lease_s=0.3)
    assert await store.heartbeat("w", [task.id], 30) == set()
    await asyncio.sleep(0.4)
    assert await store.claim_task("thief", 30) is None
    [listed] = await store.list_tasks(task.job_id)
    assert listed.lease_until is not None and task.lease_until is not None
    assert listed.lease_until > task.lease_until + timedelta(seconds=20)
    assert await store.heartbeat("w", [], 30) == set()
    assert await store.heartbeat("w", [task.id, 98765], 30) == {98765}
    assert await store.heartbeat("someone-else", [task.id], 30) == {task.id}


async def test_heartbeat_reports_cancelled_and_failed_jobs(store: SqlJobStore, user: User) -> None:
    a = await make_job(store, user, "a")
    b = await make_job(store, user, "b")
    ta, tb = await claim(store, "w"), await claim(store, "w")
    assert (ta.job_id, tb.job_id) == (a.id, b.id)
    await store.request_cancel(a.id)
    assert await store.heartbeat("w", [ta.id, tb.id], 30) == {ta.id}
    await store.finish_job(b.id, JobState.FAILED, reason="gone")
    assert await store.heartbeat("w", [ta.id, tb.id], 30) == {ta.id, tb.id}


async def test_concurrent_claimers_never_share_a_task(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    await to_execute(store, job, 20)
    claims = await asyncio.gather(*(store.claim_task(f"w{i}", 30) for i in range(30)))
    got = [t for t in claims if t is not None]
    assert len(got) == 20 and claims.count(None) == 10
    assert len({t.id for t in got}) == 20
    listed = await store.list_tasks(job.id, Phase.EXECUTE)
    assert {t.lease_owner for t in listed} == {t.lease_owner for t in got}


async def test_checkpoint_returns_the_jobs_state_and_counters(
    store: SqlJobStore, user: User
) -> None:
    job = await make_job(store, user)
    await to_execute(store, job, 2)
    await store.update_job(job.id, totals={"objects": 9, "bytes": 90})
    mine, theirs = await claim(store, "w1"), await claim(store, "w2")
    first = await store.checkpoint(mine.id, "w1", key="k0a", progress=Progress(3, 1, 0, 30))
    assert first == JobCounters(JobState.EXECUTING, 3, 1, {"objects": 9, "bytes": 90})
    # the job-wide counters: another worker's additions are in the answer
    other = await store.checkpoint(theirs.id, "w2", key="k1a", progress=Progress(failed=2))
    assert (other.processed, other.failed) == (3, 3)
    # a checkpoint that adds nothing still reads them
    same = await store.checkpoint(mine.id, "w1", key="k0b", progress=Progress())
    assert (same.state, same.processed, same.failed) == (JobState.EXECUTING, 3, 3)
    # a job ended meanwhile (say by its failure threshold, judged on another worker)
    await store.finish_job(job.id, JobState.FAILED, reason="elsewhere")
    ended = await store.checkpoint(mine.id, "w1", key="k0c", progress=Progress(processed=1))
    assert ended.state is JobState.FAILED and not ended.state.active
    assert ended.processed == 4


async def test_checkpoint(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    task = await claim(store, "w")
    results = [
        ResultRecord(
            f"k{i}",
            f"v{i}" if i % 2 else None,
            "copy",
            Outcome.FAILED if i == 3 else Outcome.SUCCEEDED,
            "SlowDown" if i == 3 else None,
            "m" if i == 3 else None,
        )
        for i in range(5)
    ]
    await store.checkpoint(
        task.id,
        "w",
        key="k4",
        progress=Progress(4, 1, 0, 400),
        state_data={"listed": 5},
        results=results,
    )
    await store.checkpoint(task.id, "w", key=None, progress=Progress(skipped=2))
    [stored] = await store.list_tasks(job.id)
    assert stored.checkpoint == "k4" and stored.state_data == {"listed": 5}
    got = await store.get_job(job.id)
    assert got is not None
    assert (got.processed, got.failed, got.skipped, got.bytes_done) == (4, 1, 2, 400)
    listed = await store.list_results(job.id)
    assert [r for _, r in listed] == results
    seqs = [s for s, _ in listed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


async def test_checkpoint_creates_partitions_with_it_or_not_at_all(
    store: SqlJobStore, user: User
) -> None:
    job = await make_job(store, user)
    examine = await claim(store, "w")
    cut = [
        NewTask(0, "", "k1", 2, 20, state_data={"plan": {"count": [2, 20]}}, checkpoint="k1"),
        NewTask(1, "k1", "k3", 2, 20),
    ]
    await store.checkpoint(
        examine.id,
        "w",
        key="k3",
        progress=Progress(processed=2),
        state_data={"cutting": {"seq": 2}},
        partitions=cut,
    )
    made = await store.list_tasks(job.id, Phase.PROCESS)
    assert [
        (t.seq, t.start_key, t.end_key, t.objects, t.checkpoint, t.state_data) for t in made
    ] == [
        (0, "", "k1", 2, "k1", {"plan": {"count": [2, 20]}}),
        (1, "k1", "k3", 2, None, {}),
    ]
    # a checkpoint refused for a lost lease creates none of its partitions
    with pytest.raises(LeaseLost):
        await store.checkpoint(
            examine.id,
            "other",
            key="k5",
            progress=Progress(processed=2),
            partitions=[NewTask(2, "k3", "k5")],
        )
    assert len(await store.list_tasks(job.id, Phase.PROCESS)) == 2
    got = await store.get_job(job.id)
    assert got is not None and got.processed == 2


async def test_a_partition_cut_done_comes_with_its_execute_tasks_and_is_never_claimed(
    store: SqlJobStore, user: User
) -> None:
    job = await make_job(store, user)
    examine = await claim(store, "w")
    done = NewTask(0, "", "k1", 2, 20, checkpoint="k1", done=True)
    follow_up = NewTask(0, "", "k1", 2, 20)
    with pytest.raises(LeaseLost):  # refused: neither is created
        await store.checkpoint(
            examine.id,
            "other",
            key="k1",
            progress=Progress(),
            partitions=[done],
            executions=[follow_up],
        )
    assert await store.list_tasks(job.id) == [examine]
    await store.checkpoint(
        examine.id, "w", key="k1", progress=Progress(), partitions=[done], executions=[follow_up]
    )
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(1, "k1", None)])
    [cut, last] = await store.list_tasks(job.id, Phase.PROCESS)
    assert (cut.state, last.state) == (TaskState.DONE, TaskState.PENDING)
    assert await store.complete_task(examine.id, "w", next_state=JobState.PROCESSING)
    # only the open-ended partition is left to run; its completion moves the job on
    process = await claim(store, "w")
    assert process.id == last.id and await store.claim_task("w2", 30) is None
    assert await store.complete_task(process.id, "w", next_state=JobState.EXECUTING)
    [execute] = await store.list_tasks(job.id, Phase.EXECUTE)
    assert (execute.seq, execute.end_key, execute.state) == (0, "k1", TaskState.PENDING)


async def test_counters_under_concurrent_increments(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    await to_execute(store, job, 6)
    tasks = [await claim(store, f"w{i}") for i in range(6)]

    async def report(task: Task) -> None:
        for _ in range(10):
            await store.checkpoint(
                task.id,
                task.lease_owner or "",
                key=None,
                progress=Progress(processed=1, failed=2, skipped=3, bytes=1000),
            )

    await asyncio.gather(*(report(t) for t in tasks))
    got = await store.get_job(job.id)
    assert got is not None
    assert (got.processed, got.failed, got.skipped, got.bytes_done) == (60, 120, 180, 60000)


async def test_complete_advances_exactly_once(store: SqlJobStore, user: User) -> None:
    for round_ in range(4):
        job = await make_job(store, user, f"b{round_}")
        await to_execute(store, job, 3)
        tasks = [await claim(store, f"w{i}") for i in range(3)]
        assert not await store.complete_task(tasks[0].id, "w0", next_state=JobState.COMPLETE)
        advanced = await asyncio.gather(
            *(
                store.complete_task(t.id, f"w{i + 1}", next_state=JobState.COMPLETE)
                for i, t in enumerate(tasks[1:])
            )
        )
        assert sorted(advanced) == [False, True]
        got = await store.get_job(job.id)
        assert got is not None and got.state is JobState.COMPLETE
        assert got.complete_time is not None


async def test_complete_does_not_revive_ended_jobs(store: SqlJobStore, user: User) -> None:
    cancelled = await make_job(store, user, "a")
    task = await claim(store, "w")
    await store.request_cancel(cancelled.id)
    with pytest.raises(LeaseLost):  # cancel dropped the task
        await store.complete_task(task.id, "w", next_state=JobState.PROCESSING)
    got = await store.get_job(cancelled.id)
    assert got is not None and got.state is JobState.CANCELLED
    failed = await make_job(store, user, "b")
    task = await claim(store, "w")
    await store.finish_job(failed.id, JobState.FAILED)
    assert not await store.complete_task(task.id, "w", next_state=JobState.PROCESSING)
    got = await store.get_job(failed.id)
    assert got is not None and got.state is JobState.FAILED


async def test_cancel_keeps_counters(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    task = await claim(store, "w")
    await store.checkpoint(task.id, "w", key="a", progress=Progress(processed=7, bytes=70))
    cancelled = await store.request_cancel(job.id)
    assert (cancelled.processed, cancelled.bytes_done) == (7, 70)
    with pytest.raises(LeaseLost):
        await store.checkpoint(task.id, "w", key="b", progress=Progress(processed=1))
    got = await store.get_job(job.id)
    assert got is not None and got.processed == 7


async def test_plan_published_when_processing_ends(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    examine = await claim(store, "w")
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(0, "", "m"), NewTask(1, "m", None)])
    await store.complete_task(examine.id, "w", next_state=JobState.PROCESSING)
    first, second = await claim(store, "a"), await claim(store, "b")
    await store.checkpoint(
        first.id,
        "a",
        key="l",
        progress=Progress(),
        state_data={"plan": {"copy": [3, 300], "skip": [1, 10]}},
    )
    await store.checkpoint(
        second.id, "b", key="z", progress=Progress(), state_data={"plan": {"copy": [2, 20]}}
    )
    assert not await store.complete_task(first.id, "a", next_state=JobState.EXECUTING)
    got = await store.get_job(job.id)
    assert got is not None and got.plan is None
    assert await store.complete_task(second.id, "b", next_state=JobState.EXECUTING)
    got = await store.get_job(job.id)
    assert got is not None and got.state is JobState.EXECUTING
    assert got.plan == {"copy": {"objects": 5, "bytes": 320}, "skip": {"objects": 1, "bytes": 10}}


async def test_totals_published_when_the_last_examine_range_ends(
    store: SqlJobStore, user: User
) -> None:
    job = await make_job(store, user)
    first = await claim(store, "w")
    # the first range cuts its partitions and hands the rest of the keys to a second range
    await store.add_tasks(job.id, Phase.PROCESS, [NewTask(0, "", "m", objects=3, bytes=30)])
    await store.add_tasks(job.id, Phase.EXAMINE, [NewTask(1, "m", None)])
    assert not await store.complete_task(first.id, "w", next_state=JobState.PROCESSING)
    got = await store.get_job(job.id)
    assert got is not None and got.state is JobState.EXAMINING and got.totals is None
    second = await claim(store, "v")
    assert (second.phase, second.start_key, second.end_key) == (Phase.EXAMINE, "m", None)
    await store.add_tasks(
        job.id,
        Phase.PROCESS,
        [
            NewTask(1_000_000, "m", "t", objects=4, bytes=400),
            NewTask(1_000_001, "t", None, objects=0, bytes=0),
        ],
    )
    assert await store.complete_task(second.id, "v", next_state=JobState.PROCESSING)
    got = await store.get_job(job.id)
    assert got is not None and got.state is JobState.PROCESSING
    assert got.totals == {"objects": 7, "bytes": 430}


async def test_a_worker_never_takes_over_its_own_task(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    first = await claim(store, "w1", lease_s=0.05)
    await asyncio.sleep(0.1)
    # the lease lapsed, but w1 may still be running the task: only another worker may take it
    assert await store.claim_task("w1", 30) is None
    taken = await claim(store, "w2", lease_s=30)
    assert (taken.id, taken.job_id, taken.attempts) == (first.id, job.id, 1)
    with pytest.raises(LeaseLost):
        await store.checkpoint(first.id, "w1", key="a", progress=Progress(processed=1))
    assert (await store.get_job(job.id)).processed == 0  # type: ignore[union-attr]


async def test_stopped_tasks_reads_without_renewing(store: SqlJobStore, user: User) -> None:
    job = await make_job(store, user)
    task = await claim(store, "w1", lease_s=0.2)
    assert await store.stopped_tasks("w1", [task.id]) == set()
    assert await store.stopped_tasks("w2", [task.id]) == {task.id}
    await asyncio.sleep(0.3)
    # no renewal happened: the lease lapsed and another worker can take the task over
    assert (await claim(store, "w2")).id == task.id
    assert await store.stopped_tasks("w1", [task.id]) == {task.id}
    await store.request_cancel(job.id)
    assert await store.stopped_tasks("w2", [task.id]) == {task.id}


async def test_release_gives_a_task_back_after_its_delay(store: SqlJobStore, user: User) -> None:
    await make_job(store, user)
    task = await claim(store, "w1")
    await store.checkpoint(task.id, "w1", key="k5", progress=Progress())
    await store.release_task(task.id, "w1", retry_in_s=0.3)
    assert await store.claim_task("w2", 30) is None  # not before its retry delay
    with pytest.raises(LeaseLost):
        await store.release_task(task.id, "w1", retry_in_s=0)
    await asyncio.sleep(0.4)
    again = await claim(store, "w1")  # the same worker may take it again: it stopped
    assert (again.id, again.checkpoint, again.attempts) == (task.id, "k5", 1)
