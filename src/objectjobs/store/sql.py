"""The SQL job store: one implementation of ``JobStore`` for SQLite and PostgreSQL.

Every method is one transaction run by :class:`objectjobs.store.db.Database`, which also
turns database errors into ``JobStoreUnavailable`` / ``JobStoreError``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from objectjobs.errors import (
    DuplicateActiveJob,
    InvalidRequest,
    JobStoreError,
    NotCancellable,
    NotFound,
)
from objectjobs.models import (
    ACTIVE_STATES,
    JobRecord,
    JobState,
    NewJob,
    Phase,
    Progress,
    ResultRecord,
    Task,
    TaskState,
    User,
)
from objectjobs.store import tasks as task_ops
from objectjobs.store.db import Database, conflict_insert
from objectjobs.store.interface import JobCounters, JobCursor, JobStore, NewTask
from objectjobs.store.records import ResultsAndLedgers
from objectjobs.store.rows import job_select, jobs_page, to_job, to_user
from objectjobs.store.schema import jobs, settings, tasks, users

_ACTIVE = [s.value for s in ACTIVE_STATES]
_ID_ATTEMPTS = 20
_CHUNK = 500  # bound parameters per IN list, well under both databases' limits
# built once: a job is read after every task start and by every describe
_JOB_BY_ID = job_select().where(jobs.c.id == bindparam("job_id", type_=jobs.c.id.type))


class _Conflict(Exception):
    """An insert hit a unique constraint; raised out of the transaction to roll it back."""


def random_job_id() -> int:
    """A random non-zero signed 32-bit integer (negative ids occur, SPEC §2.4)."""
    while True:
        value = secrets.randbits(32)
        value = value - (1 << 32) if value >= (1 << 31) else value
        if value:
            return value


class SqlJobStore(ResultsAndLedgers, JobStore):
    """``sqlite:///path`` (embedded, one node) or ``postgresql://...`` (many nodes).

    ``clock`` (UTC-aware ``now``) exists for tests that need equal or controlled times.
    """

    def __init__(
        self, url: str, *, pool_size: int = 10, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._db = Database(url, pool_size=pool_size)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._closed = False

    def _now(self) -> datetime:
        return self._clock()

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return conflict_insert(self._db.dialect, table)

    # --- lifecycle ----------------------------------------------------------------------

    async def migrate(self) -> None:
        await self._db.migrate()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.dispose()

    async def ping(self) -> None:
        def work(conn: Connection) -> None:
            conn.execute(select(1))

        await self._db.run(work, write=False)

    async def get_or_create_setting(self, name: str, default: str) -> str:
        def work(conn: Connection) -> str:
            stmt = self._insert(settings).values(name=name, value=default)
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
            value = conn.scalar(select(settings.c.value).where(settings.c.name == name))
            return str(value)

        return await self._db.run(work, write=True)

    # --- users --------------------------------------------------------------------------

    async def create_user(self, name: str, role: str, password_hash: str) -> User:
        def work(conn: Connection) -> User:
            try:
                stmt = users.insert().values(
                    name=name, role=role, password_hash=password_hash, created_at=self._now()
                )
                row = conn.execute(stmt.returning(*users.c)).mappings().one()
            except IntegrityError:
                raise _Conflict() from None
            return to_user(row)

        try:
            return await self._db.run(work, write=True)
        except _Conflict:
            raise InvalidRequest(f"user name {name!r} is taken") from None

    async def _one_user(self, where: Any) -> User | None:
        def work(conn: Connection) -> User | None:
            row = conn.execute(select(users).where(where)).mappings().first()
            return to_user(row) if row is not None else None

        return await self._db.run(work, write=False)

    async def get_user(self, user_id: int) -> User | None:
        return await self._one_user(users.c.id == user_id)

    async def get_user_by_name(self, name: str) -> User | None:
        return await self._one_user(users.c.name == name)

    async def list_users(self) -> list[User]:
        def work(conn: Connection) -> list[User]:
            rows = conn.execute(select(users).order_by(users.c.id)).mappings()
            return [to_user(r) for r in rows]

        return await self._db.run(work, write=False)

    async def set_password(self, user_id: int, password_hash: str) -> None:
        def work(conn: Connection) -> None:
            stmt = update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            if conn.execute(stmt).rowcount != 1:
                raise NotFound(f"user {user_id} not found")

        await self._db.run(work, write=True)

    # --- jobs ---------------------------------------------------------------------------

    def _job(self, conn: Connection, job_id: int) -> JobRecord | None:
        row = conn.execute(_JOB_BY_ID, {"job_id": job_id}).mappings().first()
        return to_job(row) if row is not None else None

    def _existing(self, conn: Connection, job: NewJob) -> JobRecord | None:
        """The job the owner created earlier with the same idempotency key, if any."""
        if job.idempotency_key is None:
            return None
        stmt = job_select().where(
            jobs.c.owner_id == job.owner_id, jobs.c.idempotency_key == job.idempotency_key
        )
        row = conn.execute(stmt).mappings().first()
        return to_job(row) if row is not None else None

    async def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        for _ in range(_ID_ATTEMPTS):
            job_id = random_job_id()

            def insert(conn: Connection, job_id: int = job_id) -> JobRecord | None:
                existing = self._existing(conn, job)
                if existing is not None:
                    return existing
                now = self._now()
                try:
                    conn.execute(
                        jobs.insert().values(
                            id=job_id,
                            job_type=job.job_type.value,
                            bucket=job.bucket,
                            prefix=job.prefix,
                            params=dict(job.params),
                            state=JobState.EXAMINING.value,
                            owner_id=job.owner_id,
                            create_time=now,
                            start_time=now,
                            failure_reasons=[],
                            idempotency_key=job.idempotency_key,
                        )
                    )
                except IntegrityError as e:
                    raise _Conflict(str(e.orig)) from None
                task_ops.add_tasks(
                    conn,
                    job_id,
                    Phase.EXAMINE,
                    [NewTask(seq=0, start_key="", end_key=None)],
                    dialect=self._db.dialect,
                )
                return None

            try:
                existing = await self._db.run(insert, write=True)
            except _Conflict as conflict:
                try:
                    await self._explain_conflict(job, str(conflict))
                except _Idempotent as e:
                    return e.job, False
            if existing is not None:
                return existing, False
            created = await self.get_job(job_id)
            if created is None:  # only if someone deleted it in between
                raise JobStoreError(f"job {job_id} vanished after creation")
            return created, True
        raise JobStoreError("could not draw an unused job id")

    async def _explain_conflict(self, job: NewJob, error: str) -> None:
        """After a failed insert: raise what blocked it, or return if it was the id."""

        def work(conn: Connection) -> tuple[JobRecord | None, int | None, bool]:
            existing = self._existing(conn, job)
            active = conn.scalar(
                select(jobs.c.id).where(
                    jobs.c.job_type == job.job_type.value,
                    jobs.c.bucket == job.bucket,
                    jobs.c.prefix == job.prefix,
                    jobs.c.state.in_(_ACTIVE),
                )
            )
            owner = conn.scalar(select(users.c.id).where(users.c.id == job.owner_id))
            return existing, active, owner is not None

        existing, active, owner_exists = await self._db.run(work, write=False)
        if existing is not None:
            raise _Idempotent(existing)
        if active is not None:
            raise DuplicateActiveJob(
                f"job {int(active)} ({job.job_type.value}) is already active on bucket "
                f"{job.bucket!r} with prefix {job.prefix!r}",
                job_id=int(active),
            )
        if not owner_exists:
            raise JobStoreError(f"job insert refused: {error.splitlines()[0][:300]}")
        # otherwise the random id was taken, or the blocking job ended meanwhile: try again

    async def get_job(self, job_id: int) -> JobRecord | None:
        def work(conn: Connection) -> JobRecord | None:
            return self._job(conn, job_id)

        return await self._db.run(work, write=False)

    async def list_jobs(
        self,
        *,
        owner_id: int | None = None,
        bucket: str | None = None,
        after: JobCursor | None = None,
        limit: int = 1000,
    ) -> list[JobRecord]:
        stmt = jobs_page(owner_id=owner_id, bucket=bucket, after=after, limit=limit)

        def work(conn: Connection) -> list[JobRecord]:
            return [to_job(r) for r in conn.execute(stmt).mappings()]

        return await self._db.run(work, write=False)

    async def request_cancel(self, job_id: int) -> JobRecord:
        def work(conn: Connection) -> JobRecord:
            state = task_ops.lock_job(conn, job_id)
            if state in _ACTIVE:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        state=JobState.CANCELLED.value,
                        complete_time=self._now(),
                        cancel_requested=True,
                    )
                )
                conn.execute(
                    update(tasks)
                    .where(tasks.c.job_id == job_id, tasks.c.state != TaskState.DONE.value)
                    .values(state=TaskState.DONE.value, lease_until=None)
                )
            elif state != JobState.CANCELLED.value:
                raise NotCancellable(f"job {job_id} has already ended {state}")
            job = self._job(conn, job_id)
            assert job is not None
            return job

        return await self._db.run(work, write=True)

    async def finish_job(
        self, job_id: int, state: JobState, *, reason: str | None = None
    ) -> JobRecord:
        if state not in (JobState.COMPLETE, JobState.FAILED):
            raise ValueError(f"finish_job ends a job COMPLETE or FAILED, not {state.value}")

        def work(conn: Connection) -> JobRecord:
            current = task_ops.lock_job(conn, job_id)
            if current in _ACTIVE:
                values: dict[str, Any] = {"state": state.value, "complete_time": self._now()}
                if reason is not None:
                    values["failure_reasons"] = [*self._reasons(conn, job_id), reason]
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            job = self._job(conn, job_id)
            assert job is not None
            return job

        return await self._db.run(work, write=True)

    def _reasons(self, conn: Connection, job_id: int) -> list[str]:
        value = conn.scalar(select(jobs.c.failure_reasons).where(jobs.c.id == job_id))
        return list(value or [])

    async def update_job(
        self,
        job_id: int,
        *,
        totals: dict[str, int] | None = None,
        plan: dict[str, dict[str, int]] | None = None,
        usage: dict[str, Any] | None = None,
        add_failure_reason: str | None = None,
        rate: float | None = None,
    ) -> None:
        def work(conn: Connection) -> None:
            # the row lock makes appending to failure_reasons safe against other writers
            task_ops.lock_job(conn, job_id)
            values: dict[str, Any] = {}
            for name, value in (
                ("totals", totals),
                ("plan", plan),
                ("usage", usage),
                ("rate", rate),
            ):
                if value is not None:
                    values[name] = value
            if add_failure_reason is not None:
                values["failure_reasons"] = [*self._reasons(conn, job_id), add_failure_reason]
            if values:
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

        await self._db.run(work, write=True)

    async def count_jobs(self) -> dict[tuple[str, str], int]:
        def work(conn: Connection) -> dict[tuple[str, str], int]:
            stmt = select(jobs.c.job_type, jobs.c.state, func.count()).group_by(
                jobs.c.job_type, jobs.c.state
            )
            return {(t, s): int(n) for t, s, n in conn.execute(stmt)}

        return await self._db.run(work, write=False)

    # --- tasks --------------------------------------------------------------------------

    async def claim_task(
        self, worker_id: str, lease_s: float, *, skip_phases: Collection[Phase] = ()
    ) -> Task | None:
        if self._db.sqlite:
            # SQLite has one writer: look before taking the write lock, so idle polling
            # never queues heartbeats and checkpoints behind it
            def probe(conn: Connection) -> bool:
                return task_ops.any_runnable(conn, worker_id, self._now(), skip_phases)

            if not await self._db.run(probe, write=False):
                return None

        def work(conn: Connection) -> Task | None:
            return task_ops.claim(
                conn,
                worker_id,
                self._now(),
                lease_s,
                skip_phases=skip_phases,
                skip_locked=self._db.dialect == "postgresql",
            )

        return await self._db.run(work, write=True)

    async def heartbeat(self, worker_id: str, task_ids: Sequence[int], lease_s: float) -> set[int]:
        def work(conn: Connection) -> set[int]:
            return task_ops.heartbeat(conn, worker_id, task_ids, self._now(), lease_s)

        return await self._db.run(work, write=True)

    async def stopped_tasks(self, worker_id: str, task_ids: Sequence[int]) -> set[int]:
        def work(conn: Connection) -> set[int]:
            return task_ops.stopped(conn, worker_id, task_ids)

        return await self._db.run(work, write=False)

    async def checkpoint(
        self,
        task_id: int,
        worker_id: str,
        *,
        key: str | None,
        progress: Progress,
        state_data: dict[str, Any] | None = None,
        results: Sequence[ResultRecord] = (),
        partitions: Sequence[NewTask] = (),
        executions: Sequence[NewTask] = (),
    ) -> JobCounters:
        def work(conn: Connection) -> JobCounters:
            job_id, counters = task_ops.checkpoint(
                conn,
                task_id,
                worker_id,
                key=key,
                progress=progress,
                state_data=state_data,
                results_=results,
            )
            for phase, new in ((Phase.PROCESS, partitions), (Phase.EXECUTE, executions)):
                task_ops.add_tasks(conn, job_id, phase, new, dialect=self._db.dialect)
            return counters

        return await self._db.run(work, write=True)

    async def add_tasks(self, job_id: int, phase: Phase, tasks: Sequence[NewTask]) -> None:
        def work(conn: Connection) -> None:
            task_ops.add_tasks(conn, job_id, phase, tasks, dialect=self._db.dialect)

        await self._db.run(work, write=True)

    async def release_task(self, task_id: int, worker_id: str, *, retry_in_s: float) -> None:
        def work(conn: Connection) -> None:
            task_ops.release(conn, task_id, worker_id, self._now(), retry_in_s)

        await self._db.run(work, write=True)

    async def complete_task(
        self, task_id: int, worker_id: str, *, next_state: JobState | None = None
    ) -> bool:
        def work(conn: Connection) -> bool:
            return task_ops.complete(conn, task_id, worker_id, next_state, self._now())

        return await self._db.run(work, write=True)

    async def list_tasks(self, job_id: int, phase: Phase | None = None) -> list[Task]:
        def work(conn: Connection) -> list[Task]:
            return task_ops.list_for_job(conn, job_id, phase)

        return await self._db.run(work, write=False)


class _Idempotent(Exception):
    """The insert lost a race to the owner's retry with the same idempotency key."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(job.id)
        self.job = job
