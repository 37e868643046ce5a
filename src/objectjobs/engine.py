"""Runs one leased task: the phases of SPEC §3.1 over one key range, with checkpoints.

EXAMINE lists the job's scope once and cuts it into key-range partitions (PROCESS tasks)
with object and byte totals. PROCESS evaluates each partition (the plan), EXECUTE applies
it. Every batch of keys ends with a checkpoint that commits, in one transaction, the last
key handled, the counters it added, the handler's state and the per-object results, so a
worker that takes over an expired lease resumes exactly where the last commit left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from objectjobs.errors import (
    AccessDenied,
    BucketNotFound,
    JobFailed,
    TransientStorageError,
)
from objectjobs.handler import JobContext, JobHandler, KeyGroup, PlanBatch, StorageResolver
from objectjobs.jobs import handler_for
from objectjobs.metrics import Metrics
from objectjobs.models import JobRecord, JobState, JobType, Phase, Progress, ResultRecord, Task
from objectjobs.partitioning import PartitionCutter
from objectjobs.ratelimit import TokenBucket
from objectjobs.readahead import read_ahead
from objectjobs.retry import backoff_delay, retrying
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion, Storage
from objectjobs.store.interface import JobCounters, JobStore, NewTask

log = logging.getLogger("objectjobs.engine")

PAGE_SIZE = 1000
#: how often the job's rate is measured for describe (objects/s over this window)
RATE_WINDOW_S = 2.0
#: EXAMINING commits its position at least this often (and whenever it cuts partitions)
EXAMINE_COMMIT_S = 1.0
#: the PROCESS tasks of EXAMINE task n (one key range of the job) are numbered from
#: n * RANGE_SEQS: ranges examined at the same time never number two partitions alike
RANGE_SEQS = 1_000_000
#: failures are judged against maxFailurePercent once this many objects were attempted
FAILURE_JUDGEMENT_MIN = 1000


class TaskRunner:
    """Executes claimed tasks for one worker."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        target_storage: StorageResolver,
        worker_id: str,
        handlers: Mapping[JobType, JobHandler] | None = None,
        metrics: Metrics | None = None,
        on_new_tasks: Callable[[], None] | None = None,
    ) -> None:
        self.handlers = handlers or {}
        #: called when a task added claimable tasks (key ranges), so its worker claims now
        self.on_new_tasks = on_new_tasks
        self._rate_marks: dict[int, tuple[float, int]] = {}
        self.metrics = metrics
        self.settings = settings
        self.store = store
        self.storage = storage
        self.target_storage = target_storage
        self.worker_id = worker_id

    async def run(self, task: Task) -> None:
        job = await self.store.get_job(task.job_id)
        if job is None or not job.state.active:
            return
        handler = self.handlers.get(job.job_type) or handler_for(job.job_type)
        limiter = await self._limiter(job)
        ctx = JobContext(
            job=job,
            task=task,
            settings=self.settings,
            store=self.store,
            storage=self.storage,
            target_storage=self.target_storage,
            run_each=self._run_each_factory(),
            state=dict(task.state_data),
        )
        try:
            if task.phase is Phase.EXAMINE:
                await self._examine(handler, ctx, limiter)
            elif task.phase is Phase.PROCESS:
                await self._process(handler, ctx, limiter)
            else:
                await self._execute(handler, ctx, limiter)
        except JobFailed as exc:
            log.warning("job %s failed: %s", job.id, exc.message, extra={"job_id": job.id})
            await self.store.finish_job(job.id, JobState.FAILED, reason=exc.message)
        except (BucketNotFound, AccessDenied) as exc:
            reason = f"{exc.code}: {exc.message}"
            log.warning("job %s failed: %s", job.id, reason, extra={"job_id": job.id})
            await self.store.finish_job(job.id, JobState.FAILED, reason=reason)
        finally:
            await handler.finish(ctx)

    # --- phases -------------------------------------------------------------------------

    async def _examine(
        self, handler: JobHandler, ctx: JobContext, limiter: TokenBucket | None
    ) -> None:
        job, task = ctx.job, ctx.task
        await handler.prepare(ctx)
        first_seq = task.seq * RANGE_SEQS
        existing = [
            t
            for t in await self.store.list_tasks(job.id, Phase.PROCESS)
            if first_seq <= t.seq < first_seq + RANGE_SEQS
        ]
        # the first task, once it split the job, examines up to the first boundary only
        splits: list[str] = ctx.state.get("splits") or []
        end = splits[0] if splits else task.end_key
        if splits:
            await self._add_ranges(job.id, splits)  # again: a crash may have come between
        if existing and existing[-1].end_key == end:
            # the range's last partition exists: only the completion was lost
            await self._finish_examine(ctx)
            return
        cutter = PartitionCutter.resumed(
            ctx.state.get("cutting"), existing, start=task.start_key, first_seq=first_seq
        )
        # A job paced by objectsPerSecond lists at full speed here instead, so its totals
        # (the progress bar's end, the ETA) are known early; PROCESSING then paces the plan.
        planning = handler.plans_while_examining and limiter is None
        count_processed = ctx.dry_run or handler.processed_in_plan
        examine_state, ctx.state = ctx.state, cutter.partition_state
        size = self.settings.worker.partition_objects
        # a job is split once, by its first task, when its first partition is full (so a
        # job of one partition never is) and the rest of the listing is still ahead
        may_split = (
            task.seq == 0 and task.end_key is None and not splits and "splits" not in examine_state
        )
        partitions: list[NewTask] = []
        executions: list[NewTask] = []  # the EXECUTE tasks of partitions cut done
        results: list[ResultRecord] = []
        progress = Progress()
        committed, dirty = time.monotonic(), False

        def cut(end_key: str | None) -> NewTask:
            partition = cutter.cut(end_key)
            ctx.state = cutter.partition_state
            if end_key is not None and partition.checkpoint == end_key:
                # planned to its end while listed: its PROCESS task would have nothing to
                # do, so it is created done, and its EXECUTE tasks with it
                partition = dataclasses.replace(partition, done=True)
                if not ctx.dry_run:
                    executions.extend(handler.execute_tasks(partition))
            return partition

        async def commit() -> None:
            nonlocal progress, committed, dirty
            examine_state["cutting"] = cutter.to_dict()
            await self._checkpoint(
                ctx,
                key=cutter.listed_to,
                progress=progress if count_processed else Progress(),
                state_data=examine_state,
                results=results,
                partitions=partitions,
                executions=executions,
            )
            partitions.clear()
            executions.clear()
            results.clear()
            progress, committed, dirty = Progress(), time.monotonic(), False

        listing_ended = False
        while not listing_ended:
            listing_ended = True
            groups = self._key_groups(handler, ctx, cutter.listed_to, end)
            async with contextlib.aclosing(groups):
                async for batch in groups:
                    # counted: groups added to the cut; unplanned: first index not planned
                    counted, unplanned, dirty = 0, 0, True
                    while counted < len(batch):
                        counted = cutter.fill(batch, counted, size)
                        if cutter.objects >= size:
                            if planning:
                                planned = batch[unplanned:counted]
                                progress += await self._plan_examined(
                                    handler, ctx, planned, results
                                )
                                unplanned = counted
                            partitions.append(cut(batch[counted - 1][0].key))
                    if planning and unplanned < len(batch):
                        progress += await self._plan_examined(
                            handler, ctx, batch[unplanned:], results
                        )
                    if may_split and partitions:
                        may_split = False
                        splits = await self._split(ctx, cutter.listed_to)
                        if splits:
                            # committed before the ranges are added, so a takeover adds
                            # the same ones
                            examine_state["splits"] = splits
                            end, listing_ended = splits[0], False
                    # A listing page takes milliseconds to count: commit when partitions
                    # are cut and about every second, not per page; a takeover repeats at
                    # most that second.
                    if partitions or time.monotonic() - committed >= EXAMINE_COMMIT_S:
                        await commit()
                    if not listing_ended:
                        await self._add_ranges(job.id, splits)
                        break  # and list on up to the range's new end
        if dirty:
            await commit()
        if planning and end is not None:
            # the listing reached the range's end: PROCESS has nothing left to list in it
            # (only the open-ended last partition catches keys written after the listing)
            ctx.state["planned_to"] = end
        last = cut(end)
        extra = handler.extra_tasks() if end is None else []
        await self._checkpoint(
            ctx, key=None, progress=Progress(), partitions=[*extra, last], executions=executions
        )
        await self._finish_examine(ctx)

    async def _split(self, ctx: JobContext, listed_to: str) -> list[str]:
        """Boundaries cutting the rest of the job's scope, after ``listed_to``, into key
        ranges that other EXAMINE tasks list at the same time; [] to list on alone."""
        ranges = self.settings.worker.examine_ranges
        if ranges < 2:
            return []
        try:
            return await ctx.storage.key_splits(
                ctx.job.bucket, prefix=ctx.prefix, start_after=listed_to, parts=ranges
            )
        except TransientStorageError as exc:
            log.info("job %s lists alone: %s", ctx.job.id, exc.message)
            return []

    async def _add_ranges(self, job_id: int, splits: Sequence[str]) -> None:
        """The EXAMINE tasks of the ranges after the first: (b1, b2], ..., (bn, end)."""
        ends: list[str | None] = [*splits[1:], None]
        await self.store.add_tasks(
            job_id,
            Phase.EXAMINE,
            [
                NewTask(seq, start, end)
                for seq, (start, end) in enumerate(zip(splits, ends, strict=True), 1)
            ],
        )
        if self.on_new_tasks is not None:
            self.on_new_tasks()

    async def _plan_examined(
        self,
        handler: JobHandler,
        ctx: JobContext,
        groups: Sequence[KeyGroup],
        results: list[ResultRecord],
    ) -> Progress:
        """Plan listed groups into ``ctx.state`` (the partition's), adding the plan's
        results to ``results``, and note how far the partition is planned; the progress
        that is."""
        decided = await handler.plan(ctx, groups)
        ctx.state["planned_to"] = ctx.batch_after = groups[-1][0].key  # the next part's bound
        results.extend(decided.results)
        return _add_to_plan(ctx.state.setdefault("plan", {}), decided)

    async def _finish_examine(self, ctx: JobContext) -> None:
        # the last range to finish moves the job on, with the totals of all partitions
        await self.store.complete_task(ctx.task.id, self.worker_id, next_state=JobState.PROCESSING)

    async def _process(
        self, handler: JobHandler, ctx: JobContext, limiter: TokenBucket | None
    ) -> None:
        job, task = ctx.job, ctx.task
        plan: dict[str, list[int]] = ctx.state.setdefault("plan", {})
        count_processed = ctx.dry_run or handler.processed_in_plan

        def add_to_plan(decided: PlanBatch) -> Progress:
            progress = _add_to_plan(plan, decided)
            return progress if count_processed else Progress()

        whole = await handler.plan_whole(ctx)
        if whole is not None:
            progress = add_to_plan(whole)
            await self._checkpoint(
                ctx,
                key=None,
                progress=progress,
                state_data=ctx.state,
                results=whole.results,
            )
        else:
            start = task.checkpoint if task.checkpoint is not None else task.start_key
            # the whole range, or of a range planned while examining (its checkpoint) the
            # keys written after the listing passed, which only the open-ended last one has
            if task.end_key is None or start < task.end_key:
                async for batch in self._key_groups(handler, ctx, start, task.end_key, limiter):
                    decided = await handler.plan(ctx, batch)
                    await self._checkpoint(
                        ctx,
                        key=batch[-1][0].key,
                        progress=add_to_plan(decided),
                        state_data=ctx.state,
                        results=decided.results,
                    )
        if ctx.dry_run:
            next_state = JobState.COMPLETE
        else:
            await self.store.add_tasks(job.id, Phase.EXECUTE, handler.execute_tasks(task))
            next_state = JobState.EXECUTING
        if next_state is JobState.COMPLETE and await self._over_failure_threshold(job.id):
            return
        await self.store.complete_task(task.id, self.worker_id, next_state=next_state)

    async def _execute(
        self, handler: JobHandler, ctx: JobContext, limiter: TokenBucket | None
    ) -> None:
        job, task = ctx.job, ctx.task
        whole = await handler.execute_whole(ctx)
        if whole is not None:
            await self._checkpoint(ctx, key=None, progress=whole.progress, results=whole.results)
        else:
            start = task.checkpoint if task.checkpoint is not None else task.start_key
            async for batch in self._key_groups(handler, ctx, start, task.end_key, limiter):
                done = await handler.execute(ctx, batch)
                counters = await self._checkpoint(
                    ctx,
                    key=batch[-1][0].key,
                    progress=done.progress,
                    state_data=ctx.state,
                    results=done.results,
                )
                if await self._judge_failures(job, counters):
                    return
        if await self._over_failure_threshold(job.id):
            return
        await self.store.complete_task(task.id, self.worker_id, next_state=JobState.COMPLETE)

    # --- helpers ------------------------------------------------------------------------

    async def _checkpoint(
        self,
        ctx: JobContext,
        *,
        key: str | None,
        progress: Progress,
        state_data: dict[str, Any] | None = None,
        results: Sequence[ResultRecord] = (),
        partitions: Sequence[NewTask] = (),
        executions: Sequence[NewTask] = (),
    ) -> JobCounters:
        counters = await self.store.checkpoint(
            ctx.task.id,
            self.worker_id,
            key=key,
            progress=progress,
            state_data=state_data,
            results=results,
            partitions=partitions,
            executions=executions,
        )
        if self.metrics is not None:
            self.metrics.count_progress(ctx.job.job_type, progress)
        if not progress.empty:
            await self._measure_rate(ctx.job.id, counters)
        return counters

    async def _measure_rate(self, job_id: int, counters: JobCounters) -> None:
        """Every RATE_WINDOW_S, the job's objects/s over the window (job-wide counters, so
        every worker's share is in it) for describe's rate and ETA."""
        now = time.monotonic()
        mark = self._rate_marks.get(job_id)
        if mark is not None and now - mark[0] < RATE_WINDOW_S:
            return
        count = counters.processed + counters.failed
        if len(self._rate_marks) > 10_000:  # marks of long-finished jobs: start afresh
            self._rate_marks.clear()
        self._rate_marks[job_id] = (now, count)
        if mark is not None:
            await self.store.update_job(job_id, rate=(count - mark[1]) / (now - mark[0]))

    async def _over_failure_threshold(self, job_id: int) -> bool:
        """``_judge_failures`` on the job as it is now (read from the store)."""
        job = await self.store.get_job(job_id)
        if job is None:
            return True
        return await self._judge_failures(
            job, JobCounters(job.state, job.processed, job.failed, job.totals)
        )

    async def _judge_failures(self, job: JobRecord, counters: JobCounters) -> bool:
        """End the job FAILED when failures exceed maxFailurePercent, judged once 1000
        objects (or, in a smaller job, all of them) were attempted; True when the job is
        no longer active (so ended here, or by someone else) and the task must stop.
        ``counters``: the job's as of the last checkpoint (it reads them in its own
        transaction, so judging after every batch costs no extra read)."""
        if not counters.state.active:
            return True
        failed = counters.failed
        attempted = counters.processed + failed
        scope = (counters.totals or {}).get("objects", 0)
        if failed == 0 or attempted < min(FAILURE_JUDGEMENT_MIN, max(scope, 1)):
            return False
        limit = float(job.params.get("maxFailurePercent", "50"))
        percent = 100.0 * failed / attempted
        if percent <= limit:
            return False
        reason = (
            f"{failed} of {attempted} objects failed ({percent:.1f}%), "
            f"above maxFailurePercent={limit:g}"
        )
        await self.store.finish_job(job.id, JobState.FAILED, reason=reason)
        return True

    async def _limiter(self, job: JobRecord) -> TokenBucket | None:
        rate = job.params.get("objectsPerSecond")
        if not rate:
            return None
        running = [
            t
            for t in await self.store.list_tasks(job.id)
            if t.lease_owner and t.state.value == "RUNNING"
        ]
        return TokenBucket(float(rate) / max(1, len(running)))

    async def _key_groups(
        self,
        handler: JobHandler,
        ctx: JobContext,
        start_after: str,
        end_key: str | None,
        limiter: TokenBucket | None = None,
    ) -> AsyncGenerator[list[KeyGroup], None]:
        """Batches of whole keys (all versions of a key together) in key order, strictly
        after ``start_after`` and up to ``end_key``; a transient listing error restarts the
        listing after the last key yielded, with backoff."""
        storage, bucket = ctx.storage, ctx.job.bucket
        lister = {
            "versions": storage.list_versions,
            "sized": storage.list_versions_sized,
            "objects": storage.list_objects,
        }[handler.listing]
        batch_cap = PAGE_SIZE
        if limiter is not None:
            batch_cap = max(1, min(PAGE_SIZE, int(float(ctx.params["objectsPerSecond"]) / 4)))
        resume, failures = start_after, 0
        while True:
            pending: list[ObjectVersion] = []
            try:
                pages = lister(
                    bucket,
                    prefix=ctx.prefix,
                    start_after=resume,
                    end_key=end_key,
                    page_size=PAGE_SIZE,
                )
                async for page in read_ahead(pages):
                    groups: list[KeyGroup] = []
                    for version in page:
                        if pending and pending[0].key != version.key:
                            groups.append(pending)
                            pending = []
                        pending.append(version)
                    for i in range(0, len(groups), batch_cap):
                        chunk = groups[i : i + batch_cap]
                        if limiter is not None:
                            await limiter.acquire(sum(len(g) for g in chunk))
                        ctx.batch_after = resume
                        yield chunk
                        resume = chunk[-1][0].key
                    failures = 0
                if pending:
                    if limiter is not None:
                        await limiter.acquire(len(pending))
                    ctx.batch_after = resume
                    yield [pending]
                return
            except TransientStorageError as exc:
                failures += 1
                if self.metrics is not None:
                    self.metrics.retries.labels("listing").inc()
                if failures > self.settings.worker.retries:
                    raise JobFailed(f"listing {bucket} kept failing: {exc.message}") from exc
                await asyncio.sleep(backoff_delay(failures, self.settings.worker.retry_base_s))

    def _run_each_factory(
        self,
    ) -> Callable[[Callable[[Any], Awaitable[Any]], Sequence[Any]], Awaitable[list[Any]]]:
        concurrency = self.settings.worker.concurrency
        retries = self.settings.worker.retries
        base_s = self.settings.worker.retry_base_s
        metrics = self.metrics

        def on_retry(exc: BaseException) -> None:
            if metrics is not None:
                metrics.retries.labels("object").inc()

        async def run_each(fn: Callable[[Any], Awaitable[Any]], items: Sequence[Any]) -> list[Any]:
            gate = asyncio.Semaphore(concurrency)

            async def one(item: Any) -> Any:
                async with gate:
                    return await retrying(
                        lambda: fn(item), retries=retries, base_s=base_s, on_retry=on_retry
                    )

            return list(await asyncio.gather(*(one(i) for i in items), return_exceptions=True))

        return run_each


def _add_to_plan(plan: dict[str, list[int]], decided: PlanBatch) -> Progress:
    """Add ``decided`` to a task's plan (action -> [objects, bytes]); the progress it is."""
    for action, (objects, size) in decided.actions.items():
        slot = plan.setdefault(action, [0, 0])
        slot[0] += objects
        slot[1] += size
    size = sum(bytes_ for _, bytes_ in decided.actions.values())
    return Progress(processed=decided.evaluated, bytes=size)
