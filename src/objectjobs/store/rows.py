"""Database rows as the records of ``objectjobs.models``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, bindparam, case, select, tuple_
from sqlalchemy.engine import RowMapping

from objectjobs.models import (
    JobRecord,
    JobState,
    JobType,
    Outcome,
    Phase,
    ResultRecord,
    Task,
    TaskState,
    UsageRecord,
    User,
)
from objectjobs.store.interface import JobCursor
from objectjobs.store.schema import jobs, tasks, users

# The job state each task phase runs in, as SQL over tasks.phase.
PHASE_JOB_STATE = case({p.value: p.job_state.value for p in Phase}, value=tasks.c.phase)
PHASE_ORDER = case({p.value: i for i, p in enumerate(Phase)}, value=tasks.c.phase)


def job_select() -> Select[Any]:
    return select(jobs, users.c.name.label("owner_name")).join(users, users.c.id == jobs.c.owner_id)


def jobs_page(
    *, owner_id: int | None, bucket: str | None, after: JobCursor | None, limit: int
) -> Select[Any]:
    """One keyset page of the newest-first job listing."""
    stmt = job_select()
    if owner_id is not None:
        stmt = stmt.where(jobs.c.owner_id == owner_id)
    if bucket is not None:
        stmt = stmt.where(jobs.c.bucket == bucket)
    if after is not None:
        # a row-value comparison, not its OR expansion: PostgreSQL turns only this form
        # into an index condition (a range scan); SQLite handles both
        stmt = stmt.where(
            tuple_(jobs.c.start_time, jobs.c.id)
            < tuple_(
                bindparam("after_time", after.start_time, type_=jobs.c.start_time.type),
                bindparam("after_id", after.job_id, type_=jobs.c.id.type),
            )
        )
    return stmt.order_by(jobs.c.start_time.desc(), jobs.c.id.desc()).limit(limit)


def to_job(row: RowMapping) -> JobRecord:
    return JobRecord(
        id=row["id"],
        job_type=JobType(row["job_type"]),
        bucket=row["bucket"],
        params=dict(row["params"]),
        state=JobState(row["state"]),
        owner_id=row["owner_id"],
        owner_name=row["owner_name"],
        create_time=row["create_time"],
        start_time=row["start_time"],
        complete_time=row["complete_time"],
        processed=row["processed"],
        failed=row["failed"],
        skipped=row["skipped"],
        bytes_done=row["bytes_done"],
        totals=row["totals"],
        plan=row["plan"],
        failure_reasons=list(row["failure_reasons"] or []),
        usage=row["usage"],
        cancel_requested=bool(row["cancel_requested"]),
        rate=float(row["rate"]),
    )


def to_task(row: RowMapping) -> Task:
    return Task(
        id=row["id"],
        job_id=row["job_id"],
        phase=Phase(row["phase"]),
        seq=row["seq"],
        start_key=row["start_key"],
        end_key=row["end_key"],
        state=TaskState(row["state"]),
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        checkpoint=row["checkpoint"],
        attempts=row["attempts"],
        objects=row["objects"],
        bytes=row["bytes"],
        state_data=dict(row["state_data"] or {}),
    )


def to_user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
    )


def to_result(row: RowMapping) -> ResultRecord:
    return ResultRecord(
        key=row["key"],
        version_id=row["version_id"],
        action=row["action"],
        outcome=Outcome(row["outcome"]),
        error_code=row["error_code"],
        message=row["message"],
    )


def to_usage(row: RowMapping) -> UsageRecord:
    return UsageRecord(
        bucket=row["bucket"],
        usage=dict(row["usage"]),
        update_time=row["update_time"],
        job_id=row["job_id"],
    )
