"""The job model: states, types, permissions and the records the job store keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobState(enum.StrEnum):
    EXAMINING = "EXAMINING"
    PROCESSING = "PROCESSING"
    EXECUTING = "EXECUTING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES


ACTIVE_STATES = frozenset({JobState.EXAMINING, JobState.PROCESSING, JobState.EXECUTING})


class JobType(enum.StrEnum):
    BATCH_REPLICATE = "BATCH_REPLICATE"
    LIFECYCLE_UPDATE = "LIFECYCLE_UPDATE"
    METRIC_RECONCILIATION = "METRIC_RECONCILIATION"
    TRIGGER_RECONCILIATION = "TRIGGER_RECONCILIATION"


class Phase(enum.StrEnum):
    """The work phase a task belongs to; each maps to the job state shown while it runs."""

    EXAMINE = "EXAMINE"
    PROCESS = "PROCESS"
    EXECUTE = "EXECUTE"

    @property
    def job_state(self) -> JobState:
        return {
            Phase.EXAMINE: JobState.EXAMINING,
            Phase.PROCESS: JobState.PROCESSING,
            Phase.EXECUTE: JobState.EXECUTING,
        }[self]


class TaskState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"


class Outcome(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


# --- permissions and roles (SPEC §2.1) ---------------------------------------------------

PERM_LIST = "mapi:jobs:list"
PERM_CREATE = "mapi:jobs:create"
PERM_CANCEL = "mapi:jobs:cancel"
PERM_ADMIN_LIST = "mapi:jobs:admin_list"
PERM_ADMIN_CANCEL = "mapi:jobs:admin_cancel"

ROLES: dict[str, tuple[str, ...]] = {
    "admin": (PERM_LIST, PERM_CREATE, PERM_CANCEL, PERM_ADMIN_LIST, PERM_ADMIN_CANCEL),
    "operator": (PERM_LIST, PERM_CREATE, PERM_CANCEL),
    "viewer": (PERM_LIST,),
}


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str
    created_at: datetime

    @property
    def permissions(self) -> tuple[str, ...]:
        return ROLES.get(self.role, ())


@dataclass(frozen=True)
class NewJob:
    """What the API asks the job store to create."""

    job_type: JobType
    bucket: str
    params: dict[str, str]
    owner_id: int
    prefix: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job as the store keeps it: the MAPI job object plus what describe needs."""

    id: int
    job_type: JobType
    bucket: str
    params: dict[str, str]
    state: JobState
    owner_id: int
    owner_name: str
    create_time: datetime
    start_time: datetime
    complete_time: datetime | None
    processed: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_done: int = 0
    totals: dict[str, int] | None = None  # {"objects", "bytes"} once EXAMINING ends
    plan: dict[str, dict[str, int]] | None = None  # action -> {"objects", "bytes"}
    failure_reasons: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None  # {"before", "after", "delta"} for metric jobs
    cancel_requested: bool = False
    # counters at the moment the engine last measured the rate, for describe's ETA
    rate: float = 0.0


@dataclass(frozen=True)
class Task:
    """One unit of leased work: a key range of one job in one phase.

    ``start_key`` is exclusive-after (``""`` = from the beginning) and ``end_key`` inclusive
    (``None`` = to the end). ``checkpoint`` is the last key whose handling is complete, so a
    takeover resumes strictly after it. ``state_data`` is the handler's own small JSON state
    for the task (e.g. partial counts), saved with each checkpoint.
    """

    id: int
    job_id: int
    phase: Phase
    seq: int
    start_key: str
    end_key: str | None
    state: TaskState
    lease_owner: str | None
    lease_until: datetime | None
    checkpoint: str | None
    attempts: int
    objects: int = 0
    bytes: int = 0
    state_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultRecord:
    """One per-object outcome behind ``jobs/report``."""

    key: str
    version_id: str | None
    action: str
    outcome: Outcome
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Progress:
    """Counter increments a task reports with a checkpoint (deltas, not totals)."""

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0

    def __add__(self, other: Progress) -> Progress:
        return Progress(
            self.processed + other.processed,
            self.failed + other.failed,
            self.skipped + other.skipped,
            self.bytes + other.bytes,
        )

    @property
    def empty(self) -> bool:
        return not (self.processed or self.failed or self.skipped or self.bytes)


@dataclass(frozen=True)
class UsageRecord:
    bucket: str
    usage: dict[str, Any]
    update_time: datetime
    job_id: int | None
