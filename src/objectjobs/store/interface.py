"""The job store contract (SPEC §4): jobs, users, leased tasks, results, usage records.

One implementation (``objectjobs.store.sql``) serves SQLite and PostgreSQL; one conformance
suite (``tests/store``) runs against both. Every method raises only exceptions of
``objectjobs.errors``: ``JobStoreUnavailable`` when the database cannot be reached,
``JobStoreError`` for other database failures, plus the domain errors named per method.

Times are timezone-aware UTC datetimes. Counters are updated atomically in the database,
so many workers can report progress on one job at once.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from objectjobs.models import (
    JobRecord,
    JobState,
    NewJob,
    Phase,
    Progress,
    ResultRecord,
    Task,
    UsageRecord,
    User,
)


@dataclass(frozen=True)
class JobCursor:
    """Keyset position in the newest-first job listing: strictly after this job."""

    start_time: datetime
    job_id: int


@dataclass(frozen=True)
class NewTask:
    """A task to create: a key range of a job for a phase. ``objects``/``bytes`` are the
    totals EXAMINING found in the range (0 when unknown); ``state_data`` is the task's
    initial handler state and ``checkpoint`` how far it is already done (a range that
    EXAMINING planned while listing it); ``done`` creates it DONE (EXAMINING did its whole
    work: nobody claims it, its phase's completion counts it as finished)."""

    seq: int
    start_key: str
    end_key: str | None
    objects: int = 0
    bytes: int = 0
    state_data: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    done: bool = False


@dataclass(frozen=True, slots=True)
class JobCounters:
    """A job's state and counters as read in the transaction of a checkpoint (every
    worker's additions committed so far included): what the engine judges the failure
    threshold and measures the rate on, without reading the job again."""

    state: JobState
    processed: int
    failed: int
    totals: dict[str, int] | None


class JobStore(abc.ABC):
    """Persistent state shared by every API and worker node."""

    # --- lifecycle ----------------------------------------------------------------------

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic). Safe to run on every start
        and from several nodes at once."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Dispose of connections. Idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Round-trip to the database. JobStoreUnavailable when it does not answer."""

    @abc.abstractmethod
    async def get_or_create_setting(self, name: str, default: str) -> str:
        """A value shared by all nodes (secret key, serial number): the stored one, or
        ``default`` stored atomically if none is (the first writer wins)."""

    # --- users --------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_user(self, name: str, role: str, password_hash: str) -> User:
        """Add a local user. InvalidRequest if the name is taken."""

    @abc.abstractmethod
    async def get_user(self, user_id: int) -> User | None: ...

    @abc.abstractmethod
    async def get_user_by_name(self, name: str) -> User | None: ...

    @abc.abstractmethod
    async def list_users(self) -> list[User]:
        """All users by id."""

    @abc.abstractmethod
    async def set_password(self, user_id: int, password_hash: str) -> None:
        """Replace a user's password hash. NotFound."""

    # --- jobs ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        """Create a job in EXAMINING with a random non-zero signed 32-bit id, and its first
        task (EXAMINE, seq 0, whole key range). Returns ``(job, created)``.

        With ``idempotency_key``: if the owner already created a job with that key, return
        ``(that job, False)`` instead. Raises DuplicateActiveJob when an active job of the
        same type, bucket and prefix exists (checked atomically with the insert)."""

    @abc.abstractmethod
    async def get_job(self, job_id: int) -> JobRecord | None: ...

    @abc.abstractmethod
    async def list_jobs(
        self,
        *,
        owner_id: int | None = None,
        bucket: str | None = None,
        after: JobCursor | None = None,
        limit: int = 1000,
    ) -> list[JobRecord]:
        """Jobs newest first (start_time desc, then id desc), strictly after ``after``,
        filtered by owner and bucket. Keyset-based: cost does not grow with depth."""

    @abc.abstractmethod
    async def request_cancel(self, job_id: int) -> JobRecord:
        """Cancel a job: an active job becomes CANCELLED with complete_time now and its
        unfinished tasks are dropped; workers see it at their next heartbeat. Idempotent
        on CANCELLED. JobNotFound; NotCancellable on COMPLETE/FAILED."""

    @abc.abstractmethod
    async def finish_job(
        self, job_id: int, state: JobState, *, reason: str | None = None
    ) -> JobRecord:
        """End an active job as COMPLETE or FAILED (``reason`` appended to its failure
        reasons), setting complete_time. A job already ended is returned unchanged."""

    @abc.abstractmethod
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
        """Set describe-level fields of a job (only those given)."""

    # --- tasks (leased work) -------------------------------------------------------------

    @abc.abstractmethod
    async def claim_task(
        self, worker_id: str, lease_s: float, *, skip_phases: Collection[Phase] = ()
    ) -> Task | None:
        """Lease one runnable task: PENDING, or RUNNING with an expired lease held by
        another worker (a takeover, which increments ``attempts``; a worker never takes
        over its own task, which it may still be running), of an active job whose state
        matches the task's phase, and not of a phase in ``skip_phases`` (a worker that
        runs as many listings as it can). Oldest job first. Uses ``FOR UPDATE SKIP
        LOCKED`` where the database has it. None when there is nothing to do."""

    @abc.abstractmethod
    async def heartbeat(self, worker_id: str, task_ids: Sequence[int], lease_s: float) -> set[int]:
        """Extend the worker's leases. Returns the ids of tasks the worker must stop: lease
        lost to another worker, task gone, or job no longer active (cancelled, failed)."""

    @abc.abstractmethod
    async def stopped_tasks(self, worker_id: str, task_ids: Sequence[int]) -> set[int]:
        """Read-only: of the worker's tasks, those it must stop (as ``heartbeat`` reports
        them) without renewing any lease. Cheap enough to poll every half second."""

    @abc.abstractmethod
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
        """In one transaction: record that the task is done up to ``key``, add ``progress``
        to the job's counters, store ``state_data``, append ``results``, create
        ``partitions`` as PROCESS tasks of the job (EXAMINING's cuts) and ``executions``
        as its EXECUTE tasks (those of partitions created done), both idempotent per seq
        as in ``add_tasks``; the job's state and counters after it. LeaseLost if the
        worker no longer holds the lease (nothing is written then)."""

    @abc.abstractmethod
    async def release_task(self, task_id: int, worker_id: str, *, retry_in_s: float) -> None:
        """Give a task back after its run failed: PENDING again, claimable by any worker
        (this one included) once ``retry_in_s`` has passed, ``attempts`` incremented, its
        checkpoint kept. LeaseLost if the worker no longer holds the lease."""

    @abc.abstractmethod
    async def add_tasks(self, job_id: int, phase: Phase, tasks: Sequence[NewTask]) -> None:
        """Create tasks of a later phase (EXAMINE creates PROCESS tasks, for example).
        Idempotent per (job, phase, seq): re-adding an existing seq changes nothing."""

    @abc.abstractmethod
    async def complete_task(
        self, task_id: int, worker_id: str, *, next_state: JobState | None = None
    ) -> bool:
        """Mark the task DONE. If it was the job's last unfinished task of its phase, move
        the job to ``next_state`` (a later active state, or COMPLETE) atomically and return
        True; otherwise return False. LeaseLost if the lease is gone.

        When it moves a job on from EXAMINING, the job's ``totals`` are set in the same
        transaction to the sum of its PROCESS tasks' ``objects`` and ``bytes`` (the
        partitions of every key range examined); from PROCESSING, its ``plan`` to the sum
        of their ``state_data["plan"]`` (action -> ``[objects, bytes]``), so neither is
        ever missing once the job has moved on."""

    @abc.abstractmethod
    async def list_tasks(self, job_id: int, phase: Phase | None = None) -> list[Task]:
        """A job's tasks by phase and seq."""

    # --- results and usage ---------------------------------------------------------------

    @abc.abstractmethod
    async def list_results(
        self,
        job_id: int,
        *,
        outcome: str | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[tuple[int, ResultRecord]]:
        """Per-object results with their sequence numbers, in insertion order, strictly
        after sequence ``after``."""

    @abc.abstractmethod
    async def failed_keys(self, bucket: str, job_type: str) -> set[tuple[str, str | None]]:
        """(key, version) pairs that FAILED in earlier jobs of this type on the bucket and
        have not succeeded since (for BATCH_REPLICATE's FAILED filter)."""

    @abc.abstractmethod
    async def get_usage(self, bucket: str) -> UsageRecord | None: ...

    @abc.abstractmethod
    async def put_usage(
        self, bucket: str, usage: dict[str, Any], job_id: int | None
    ) -> UsageRecord:
        """Replace the bucket's stored usage record."""

    @abc.abstractmethod
    async def list_usage(self) -> list[UsageRecord]:
        """Every stored usage record (for the /metrics gauges)."""

    # --- ledgers -------------------------------------------------------------------------

    @abc.abstractmethod
    async def ledger_missing(self, ledger: str, keys: Sequence[str]) -> set[str]:
        """Of ``keys``, those not yet recorded in the named ledger (e.g. delivered events)."""

    @abc.abstractmethod
    async def ledger_add(self, ledger: str, keys: Sequence[str]) -> None:
        """Record keys in the named ledger (idempotent)."""

    @abc.abstractmethod
    async def ledger_clear(self, ledger: str, prefix: str = "") -> None:
        """Forget a ledger's keys starting with ``prefix``."""

    # --- idempotency / user counts --------------------------------------------------------

    @abc.abstractmethod
    async def count_jobs(self) -> dict[tuple[str, str], int]:
        """(job type, state) -> number of jobs, for the /metrics gauges."""
