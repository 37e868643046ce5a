"""Leased tasks: claim, heartbeat, checkpoint, completion.

Each function runs inside one transaction given by the caller. Lock order is always the job
row before its task rows (PostgreSQL), so cancel, checkpoint and completion never deadlock
each other. Lease times come from the application clock in UTC; nodes sharing a PostgreSQL
server are expected to keep their clocks in sync (NTP), as leases are seconds long.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection, Dialect

from objectjobs.errors import JobNotFound, LeaseLost
from objectjobs.models import (
    ACTIVE_STATES,
    JobState,
    Outcome,
    Phase,
    Progress,
    ResultRecord,
    Task,
    TaskState,
)
from objectjobs.store.db import conflict_insert
from objectjobs.store.interface import JobCounters, NewTask
from objectjobs.store.rows import PHASE_JOB_STATE, PHASE_ORDER, to_task
from objectjobs.store.schema import jobs, results, tasks

_ACTIVE = [s.value for s in ACTIVE_STATES]
_RUNNING = TaskState.RUNNING.value


def _job_runs_phase() -> Any:
    """The task's job is active, not being cancelled, and in the state of the task's phase."""
    return and_(
        jobs.c.state == PHASE_JOB_STATE,
        jobs.c.state.in_(_ACTIVE),
        jobs.c.cancel_requested.is_(False),
    )


# The statements of the hot paths (claims, checkpoints, completions) are built once, with
# bound parameters: building a statement cost more than running it (the claim's probe
# ~1 ms of CPU against ~0.2 ms to run it on SQLite), and a statement object reused keeps
# its memoised cache key, so SQLAlchemy finds its compiled form at once.
_NOW = bindparam("now", type_=tasks.c.lease_until.type)
_WORKER = bindparam("worker_id", type_=tasks.c.lease_owner.type)
_TASK = bindparam("task_id", type_=tasks.c.id.type)
_JOB = bindparam("job_id", type_=jobs.c.id.type)


@functools.cache
def _runnable(skipped: tuple[str, ...]) -> Any:
    """The next task to claim, for ``now`` and ``worker_id`` (bound parameters)."""
    return (
        select(tasks.c.id)
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(
            or_(
                # a released task waits out its retry delay (lease_until) before anyone claims it
                and_(
                    tasks.c.state == TaskState.PENDING.value,
                    or_(tasks.c.lease_until.is_(None), tasks.c.lease_until < _NOW),
                ),
                # a worker never takes over its own task: while it still runs it, its
                # checkpoints would be accepted alongside those of the new run
                and_(
                    tasks.c.state == _RUNNING,
                    tasks.c.lease_until < _NOW,
                    tasks.c.lease_owner != _WORKER,
                ),
            ),
            _job_runs_phase(),
            *([tasks.c.phase.not_in(skipped)] if skipped else []),
        )
        .order_by(jobs.c.create_time, jobs.c.id, tasks.c.seq, tasks.c.id)
        .limit(1)
    )


def _skipped(skip_phases: Collection[Phase]) -> tuple[str, ...]:
    return tuple(sorted(phase.value for phase in skip_phases))


def any_runnable(
    conn: Connection, worker_id: str, now: datetime, skip_phases: Collection[Phase]
) -> bool:
    """Read-only: is there a task ``claim`` would take? (lets idle workers poll without
    taking SQLite's write lock)"""
    stmt = _runnable(_skipped(skip_phases))
    return conn.execute(stmt, {"now": now, "worker_id": worker_id}).first() is not None


@functools.cache
def _claim(skipped: tuple[str, ...], skip_locked: bool) -> Any:
    runnable = _runnable(skipped)
    if skip_locked:
        # concurrent claimers skip each other's candidate instead of queueing behind it
        runnable = runnable.with_for_update(skip_locked=True, of=tasks)
    return (
        update(tasks)
        .where(tasks.c.id == runnable.scalar_subquery())
        .values(
            state=_RUNNING,
            lease_owner=_WORKER,
            lease_until=bindparam("new_lease_until", type_=tasks.c.lease_until.type),
            # a RUNNING task here has an expired lease: this claim is a takeover
            attempts=tasks.c.attempts + case((tasks.c.state == _RUNNING, 1), else_=0),
        )
        .returning(*tasks.c)
    )


def claim(
    conn: Connection,
    worker_id: str,
    now: datetime,
    lease_s: float,
    *,
    skip_phases: Collection[Phase],
    skip_locked: bool,
) -> Task | None:
    params = {
        "now": now,
        "worker_id": worker_id,
        "new_lease_until": now + timedelta(seconds=lease_s),
    }
    stmt = _claim(_skipped(skip_phases), skip_locked)
    row = conn.execute(stmt, params).mappings().first()
    return to_task(row) if row is not None else None


def _still_ours(worker_id: str, wanted: set[int]) -> Any:
    return (
        select(tasks.c.id)
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(
            tasks.c.id.in_(wanted),
            tasks.c.lease_owner == worker_id,
            tasks.c.state == _RUNNING,
            _job_runs_phase(),
        )
    )


def stopped(conn: Connection, worker_id: str, task_ids: Sequence[int]) -> set[int]:
    """Read-only half of ``heartbeat``: the tasks the worker must stop."""
    wanted = set(task_ids)
    if not wanted:
        return set()
    return wanted - set(conn.execute(_still_ours(worker_id, wanted)).scalars())


def heartbeat(
    conn: Connection, worker_id: str, task_ids: Sequence[int], now: datetime, lease_s: float
) -> set[int]:
    if not task_ids:
        return set()
    wanted = set(task_ids)
    still_ours = _still_ours(worker_id, wanted)
    stmt = (
        update(tasks)
        .where(tasks.c.id.in_(still_ours.scalar_subquery()))
        .values(lease_until=now + timedelta(seconds=lease_s))
        .returning(tasks.c.id)
    )
    kept = set(conn.execute(stmt).scalars())
    return wanted - kept


_JOB_OF = select(tasks.c.job_id).where(tasks.c.id == _TASK)
_LOCK_JOB = select(jobs.c.state).where(jobs.c.id == _JOB).with_for_update()


def _job_of(conn: Connection, task_id: int) -> int:
    job_id = conn.execute(_JOB_OF, {"task_id": task_id}).scalar_one_or_none()
    if job_id is None:
        raise LeaseLost(f"task {task_id} no longer exists")
    return int(job_id)


def lock_job(conn: Connection, job_id: int) -> str:
    state = conn.execute(_LOCK_JOB, {"job_id": job_id}).scalar_one_or_none()
    if state is None:
        raise JobNotFound(f"job {job_id} not found")
    return str(state)


def checkpoint(
    conn: Connection,
    task_id: int,
    worker_id: str,
    *,
    key: str | None,
    progress: Progress,
    state_data: dict[str, Any] | None,
    results_: Sequence[ResultRecord],
) -> tuple[int, JobCounters]:
    """Checkpoint the task (see JobStore.checkpoint); its job's id and counters."""
    job_id = _job_of(conn, task_id)
    if not progress.empty:
        # job row first (lock order); additions in SQL, so concurrent workers never lose one
        added = {
            "add_processed": progress.processed,
            "add_failed": progress.failed,
            "add_skipped": progress.skipped,
            "add_bytes": progress.bytes,
        }
        row = conn.execute(_COUNT_PROGRESS, {"job_id": job_id, **added}).one()
    else:
        row = conn.execute(_READ_COUNTERS, {"job_id": job_id}).one()
    values: dict[str, Any] = {"task_id": task_id, "worker_id": worker_id}
    if key is not None:
        values["new_checkpoint"] = key
    if state_data is not None:
        values["new_state_data"] = state_data
    owned = _checkpointed(key is not None, state_data is not None)
    if conn.execute(owned, values).rowcount != 1:
        # raising rolls the whole transaction back: the counters above are not kept
        raise LeaseLost(f"task {task_id} is no longer leased to {worker_id}")
    if results_:
        _insert_results(conn, job_id, results_)
    return job_id, JobCounters(JobState(row[0]), row[1], row[2], row[3])


_COUNTERS = (jobs.c.state, jobs.c.processed, jobs.c.failed, jobs.c.totals)
_COUNT_PROGRESS = (
    update(jobs)
    .where(jobs.c.id == _JOB)
    .values(
        processed=jobs.c.processed + bindparam("add_processed", type_=jobs.c.processed.type),
        failed=jobs.c.failed + bindparam("add_failed", type_=jobs.c.failed.type),
        skipped=jobs.c.skipped + bindparam("add_skipped", type_=jobs.c.skipped.type),
        bytes_done=jobs.c.bytes_done + bindparam("add_bytes", type_=jobs.c.bytes_done.type),
    )
    .returning(*_COUNTERS)
)
_READ_COUNTERS = select(*_COUNTERS).where(jobs.c.id == _JOB)
_OWNED = and_(tasks.c.id == _TASK, tasks.c.lease_owner == _WORKER, tasks.c.state == _RUNNING)


@functools.cache
def _checkpointed(key: bool, state_data: bool) -> Any:
    """The UPDATE of a checkpoint that sets the key and/or the state (or neither: it then
    only proves the lease is still held)."""
    values: dict[str, Any] = {}
    if key:
        values["checkpoint"] = bindparam("new_checkpoint", type_=tasks.c.checkpoint.type)
    if state_data:
        values["state_data"] = bindparam("new_state_data", type_=tasks.c.state_data.type)
    return update(tasks).where(_OWNED).values(**values or {"lease_owner": _WORKER})


_RESULT_COLUMNS = ("job_id", "key", "version_id", "action", "outcome", "error_code", "message")
#: result rows per INSERT on SQLite: 999 bound variables, the lowest limit any SQLite had
_SQLITE_ROWS_PER_INSERT = 999 // len(_RESULT_COLUMNS)
#: an outcome's text, from the enum member or the same text (and a KeyError for neither)
_OUTCOME_TEXT: dict[str, str] = {o: o.value for o in Outcome}


def _insert_results_sql(dialect: Dialect, rows: int = 1) -> str:
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row = f"({', '.join([mark] * len(_RESULT_COLUMNS))})"
    return (
        f"INSERT INTO {quote(results.name)} ({', '.join(map(quote, _RESULT_COLUMNS))}) "
        f"VALUES {', '.join([row] * rows)}"
    )


def _insert_results(conn: Connection, job_id: int, records: Sequence[ResultRecord]) -> None:
    """Append result rows at the driver level, from tuples: a checkpoint carries up to a
    thousand rows, and a Core insert of dicts spent 5-8 us more per row building and
    processing parameters that need no processing (no column here has a bind processor on
    either database).

    On SQLite, as multi-row INSERTs: executemany steps and resets the statement once per
    row, which costs about as much again as storing the row (sqlite3 alone, 1000-row
    transactions: ~10 us a row against ~6). PostgreSQL keeps executemany, which psycopg
    pipelines."""
    outcome = _OUTCOME_TEXT
    rows = [
        (job_id, r.key, r.version_id, r.action, outcome[r.outcome], r.error_code, r.message)
        for r in records
    ]
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(_insert_results_sql(conn.dialect), rows)
        return
    step = _SQLITE_ROWS_PER_INSERT
    for i in range(0, len(rows), step):
        chunk = rows[i : i + step]
        values = tuple(itertools.chain.from_iterable(chunk))
        conn.exec_driver_sql(_insert_results_sql(conn.dialect, len(chunk)), values)


def add_tasks(
    conn: Connection, job_id: int, phase: Phase, new: Sequence[NewTask], *, dialect: str
) -> None:
    if not new:
        return
    rows: list[dict[str, Any]] = [
        {
            "job_id": job_id,
            "phase": phase.value,
            "seq": t.seq,
            "start_key": t.start_key,
            "end_key": t.end_key,
            "state": (TaskState.DONE if t.done else TaskState.PENDING).value,
            "attempts": 0,
            "objects": t.objects,
            "bytes": t.bytes,
            "state_data": t.state_data,
            "checkpoint": t.checkpoint,
        }
        for t in new
    ]
    stmt = conflict_insert(dialect, tasks).on_conflict_do_nothing(
        index_elements=["job_id", "phase", "seq"]
    )
    lock_job(conn, job_id)
    conn.execute(stmt, rows)


def release(
    conn: Connection, task_id: int, worker_id: str, now: datetime, retry_in_s: float
) -> None:
    released = (
        update(tasks)
        .where(tasks.c.id == task_id, tasks.c.lease_owner == worker_id, tasks.c.state == _RUNNING)
        .values(
            state=TaskState.PENDING.value,
            lease_owner=None,
            lease_until=now + timedelta(seconds=retry_in_s),
            attempts=tasks.c.attempts + 1,
        )
    )
    if conn.execute(released).rowcount != 1:
        raise LeaseLost(f"task {task_id} is no longer leased to {worker_id}")


_COMPLETE = (
    update(tasks)
    .where(_OWNED)
    .values(state=TaskState.DONE.value, lease_until=None)
    .returning(tasks.c.phase)
)
_UNFINISHED = (
    select(func.count())
    .select_from(tasks)
    .where(
        tasks.c.job_id == _JOB,
        tasks.c.phase == bindparam("phase", type_=tasks.c.phase.type),
        tasks.c.state != TaskState.DONE.value,
    )
)


def complete(
    conn: Connection,
    task_id: int,
    worker_id: str,
    next_state: JobState | None,
    now: datetime,
) -> bool:
    job_id = _job_of(conn, task_id)
    # The job row lock serialises the completions of one job's tasks: of two workers ending
    # the last two tasks at once, the second sees the first's DONE and advances the job.
    job_state = lock_job(conn, job_id)
    params = {"task_id": task_id, "worker_id": worker_id}
    phase_value = conn.execute(_COMPLETE, params).scalar_one_or_none()
    if phase_value is None:
        raise LeaseLost(f"task {task_id} is no longer leased to {worker_id}")
    phase = Phase(phase_value)
    unfinished = conn.execute(_UNFINISHED, {"job_id": job_id, "phase": phase.value}).scalar_one()
    if unfinished or job_state != phase.job_state.value:
        return False
    if next_state is not None and next_state.value != job_state:
        values: dict[str, Any] = {"state": next_state.value}
        if not next_state.active:
            values["complete_time"] = now
        if phase is Phase.EXAMINE:
            # the partitions of every key range EXAMINING listed, summed once all are cut
            values["totals"] = _summed_totals(conn, job_id)
        elif phase is Phase.PROCESS:
            # published with the phase change, so a job past PROCESSING always has its plan
            values["plan"] = _summed_plan(conn, job_id)
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
    return True


def _summed_totals(conn: Connection, job_id: int) -> dict[str, int]:
    """The objects and bytes of the job's PROCESS partitions."""
    objects, size = conn.execute(
        select(
            func.coalesce(func.sum(tasks.c.objects), 0),
            func.coalesce(func.sum(tasks.c.bytes), 0),
        ).where(tasks.c.job_id == job_id, tasks.c.phase == Phase.PROCESS.value)
    ).one()
    return {"objects": int(objects), "bytes": int(size)}


def _summed_plan(conn: Connection, job_id: int) -> dict[str, dict[str, int]]:
    """The sum of the PROCESS tasks' ``state_data["plan"]`` (action -> [objects, bytes])."""
    plan: dict[str, dict[str, int]] = {}
    rows = conn.scalars(
        select(tasks.c.state_data).where(
            tasks.c.job_id == job_id, tasks.c.phase == Phase.PROCESS.value
        )
    )
    for state_data in rows:
        for action, (objects, size) in ((state_data or {}).get("plan") or {}).items():
            slot = plan.setdefault(action, {"objects": 0, "bytes": 0})
            slot["objects"] += int(objects)
            slot["bytes"] += int(size)
    return plan


_JOB_TASKS = select(tasks).where(tasks.c.job_id == _JOB).order_by(PHASE_ORDER, tasks.c.seq)
_JOB_PHASE_TASKS = (
    select(tasks)
    .where(tasks.c.job_id == _JOB, tasks.c.phase == bindparam("phase", type_=tasks.c.phase.type))
    .order_by(tasks.c.seq)
)


def list_for_job(conn: Connection, job_id: int, phase: Phase | None) -> list[Task]:
    if phase is None:
        rows = conn.execute(_JOB_TASKS, {"job_id": job_id})
    else:
        rows = conn.execute(_JOB_PHASE_TASKS, {"job_id": job_id, "phase": phase.value})
    return [to_task(r) for r in rows.mappings()]
