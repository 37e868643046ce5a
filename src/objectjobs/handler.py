"""What a job type implements, and the context the engine hands it.

The engine owns the phases, leases, checkpoints, retries, rate limit and progress; a job type
only says how to evaluate a key's versions (PROCESS) and how to act on them (EXECUTE).
Entries always reach a handler grouped by key (all versions of one key together, newest
first), so a checkpoint never splits a key.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from objectjobs.models import JobRecord, NewJob, Progress, ResultRecord, Task
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion, Storage
from objectjobs.store.interface import JobStore, NewTask

T = TypeVar("T")
R = TypeVar("R")

KeyGroup = Sequence[ObjectVersion]


@dataclass
class PlanBatch:
    """What PROCESS decided for some key groups: action -> [objects, bytes], and how many
    versions were evaluated. ``results`` (optional) are per-object records stored with the
    checkpoint, e.g. a dry run's planned actions for ``jobs/report``."""

    actions: dict[str, list[int]] = field(default_factory=dict)
    evaluated: int = 0
    results: list[ResultRecord] = field(default_factory=list)

    def add(self, action: str, size: int, count: int = 1) -> None:
        slot = self.actions.setdefault(action, [0, 0])
        slot[0] += count
        slot[1] += size

    def add_to(self, plan: dict[str, list[int]]) -> Progress:
        """Add these decisions to a task's plan (action -> [objects, bytes]); the progress
        they are."""
        total = 0
        for action, (objects, size) in self.actions.items():
            slot = plan.setdefault(action, [0, 0])
            slot[0] += objects
            slot[1] += size
            total += size
        return Progress(processed=self.evaluated, bytes=total)


@dataclass
class ExecBatch:
    """What EXECUTE did for some key groups: counters and per-object results."""

    progress: Progress = field(default_factory=Progress)
    results: list[ResultRecord] = field(default_factory=list)

    def record(self, result: ResultRecord, size: int = 0) -> None:
        from objectjobs.models import Outcome

        self.results.append(result)
        if result.outcome is Outcome.FAILED:
            self.progress += Progress(failed=1)
        elif result.outcome is Outcome.SKIPPED:
            self.progress += Progress(processed=1, skipped=1)
        else:
            self.progress += Progress(processed=1, bytes=size)


StorageResolver = Callable[[str], Storage]


@dataclass
class JobContext:
    """Everything a handler may use while working on one task of one job."""

    job: JobRecord
    task: Task
    settings: Settings
    store: JobStore
    storage: Storage
    #: opens the storage of a named remote target (``targets.<name>``)
    target_storage: StorageResolver
    #: runs ``fn`` over items with the worker's per-object concurrency, retrying transient
    #: storage errors with backoff and jitter, honouring ``objectsPerSecond``
    run_each: Callable[[Callable[[Any], Awaitable[Any]], Sequence[Any]], Awaitable[list[Any]]]
    #: the handler's own state for this task (saved with each checkpoint)
    state: dict[str, Any] = field(default_factory=dict)
    #: exclusive lower bound of the keys in the batch being handled: the batch covers the
    #: key range (batch_after, last key of the batch], e.g. to list a target over it
    batch_after: str = ""
    #: objects the handler opens for this run of the task and must not checkpoint (open
    #: connections, clients); release them in ``JobHandler.finish``
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, str]:
        return self.job.params

    @property
    def prefix(self) -> str:
        return self.job.params.get("prefix", "")

    @property
    def dry_run(self) -> bool:
        return self.job.params.get("dryRun", "false").lower() == "true"


class JobHandler(abc.ABC):
    """One job type's logic. Instances are stateless; per-task state lives in ctx.state."""

    #: "versions" lists every version and delete marker; "objects" current objects only;
    #: "sized" is "versions" for a handler that needs no etag (``list_versions_sized``:
    #: the local driver then reads no sidecar file per object)
    listing: Literal["versions", "sized", "objects"] = "versions"
    #: True when evaluating an object is its whole handling (counting), so PROCESS advances
    #: ``jobStats.processed``; otherwise only EXECUTE (or a dry run's PROCESS) does
    processed_in_plan: bool = False
    #: True when ``plan`` is cheap next to listing the keys (it only counts, or reads a
    #: little): EXAMINING then plans each partition while it lists it, committing plan,
    #: progress and results with its checkpoints, and PROCESSING does not list the range
    #: again (only keys written after EXAMINING passed the end of the last partition).
    #: Leave it False when planning is costly (it would run in the one EXAMINE task
    #: instead of in parallel PROCESS tasks). Not used for a job with objectsPerSecond:
    #: its EXAMINING lists at full speed, so totals and ETA are known early.
    plans_while_examining: bool = False

    async def validate(  # noqa: B027 - optional hook
        self, job: NewJob, storage: Storage, settings: Settings
    ) -> None:
        """Extra checks at create time beyond parameter syntax, e.g. that a target or a
        notification ARN resolves (raise InvalidRequest; storage errors propagate)."""

    async def prepare(self, ctx: JobContext) -> None:  # noqa: B027 - optional hook
        """Runs at the start of EXAMINING: read configurations and raise JobFailed with a
        reason if the job cannot run (policy unreadable, no target, ...)."""

    async def finish(self, ctx: JobContext) -> None:  # noqa: B027 - optional hook
        """Runs when the engine stops running the task, however it stops (done, failed,
        cancelled, lease lost): release what the handler put in ``ctx.resources``."""

    @abc.abstractmethod
    async def plan(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> PlanBatch:
        """PROCESSING: decide the action for every version of these keys."""

    @abc.abstractmethod
    async def execute(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> ExecBatch:
        """EXECUTING: apply the actions to these keys; never raise for one object's failure
        (record it), raise only for job-level failures (JobFailed)."""

    def extra_tasks(self) -> list[NewTask]:
        """PROCESS tasks beyond the key-range partitions, added when EXAMINING ends, for
        job-wide work such as multipart uploads. Give them negative ``seq`` numbers; their
        work is done by ``plan_whole`` and ``execute_whole``."""
        return []

    async def plan_whole(self, ctx: JobContext) -> PlanBatch | None:
        """For a PROCESS task that is one job-wide step instead of per-key work (see
        ``extra_tasks``): return its plan; None (the default) means per-key ``plan``."""
        return None

    def execute_tasks(self, process_task: Task | NewTask) -> list[NewTask]:
        """The EXECUTE tasks a finished PROCESS task (or a partition EXAMINING cut done)
        leads to: by default the same range."""
        return [
            NewTask(
                seq=process_task.seq,
                start_key=process_task.start_key,
                end_key=process_task.end_key,
                objects=process_task.objects,
                bytes=process_task.bytes,
            )
        ]

    async def execute_whole(self, ctx: JobContext) -> ExecBatch | None:
        """For handlers whose EXECUTE is one job-wide step instead of per-key work: return
        its outcome; None (the default) means per-key ``execute`` over the task's range."""
        return None
