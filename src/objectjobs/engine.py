"""Runs one leased task: the phases of SPEC §3.1 over one key range, with checkpoints.

EXAMINE lists the job's scope once, in one or several key ranges, and cuts it into
key-range partitions (PROCESS tasks) with object and byte totals (``examining``). PROCESS
evaluates each partition (the plan), EXECUTE applies it. Every batch of keys ends with a
checkpoint that commits, in one transaction, the last key handled, the counters it added,
the handler's state and the per-object results, so a worker that takes over an expired
lease resumes exactly where the last commit left off.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from objectjobs.examining import Examination
from objectjobs.handler import JobContext, JobHandler, KeyGroup, PlanBatch, StorageResolver
from objectjobs.jobs import handler_for
from objectjobs.metrics import Metrics
from objectjobs.models import JobRecord, JobState, JobType, Phase, Progress, ResultRecord, Task
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
                await Examination(self, handler, ctx, limiter).run()
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

    async def _process(
        self, handler: JobHandler, ctx: JobContext, limiter: TokenBucket | None
    ) -> None:
        job, task = ctx.job, ctx.task
        plan: dict[str, list[int]] = ctx.state.setdefault("plan", {})
        count_processed = ctx.dry_run or handler.processed_in_plan

        def add_to_plan(decided: PlanBatch) -> Progress:
            progress = decided.add_to(plan)
            return progress if count_processed else Progress()

        whole = await handler.plan_whole(ctx)
        if whole is not None:
            progress = add_to_plan(whole)
            await self.checkpoint(
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
                async for batch in self.key_groups(handler, ctx, start, task.end_key, limiter):
                    decided = await handler.plan(ctx, batch)
                    await self.checkpoint(
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
            await self.checkpoint(ctx, key=None, progress=whole.progress, results=whole.results)
        else:
            start = task.checkpoint if task.checkpoint is not None else task.start_key
            async for batch in self.key_groups(handler, ctx, start, task.end_key, limiter):
                done = await handler.execute(ctx, batch)
                counters = await self.checkpoint(
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

    async def checkpoint(
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
        """``JobStore.checkpoint`` for the task of ``ctx``, counted in the metrics and the
        job's rate; the job's state and counters as of the commit. LeaseLost."""
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

    async def key_groups(
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
        # a store without versions (or a listing of current objects) lists each key once:
        # every entry is a group of its own, made by C loops instead of a step per entry
        single = handler.listing == "objects" or not storage.capabilities.versioning
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
                # closed with this generator, not when collected: a consumer that stops
                # early (a range cut shorter) must not leave a read-ahead listing running
                # beside its next one
                async with contextlib.aclosing(read_ahead(pages)) as ahead:
                    async for page in ahead:
                        groups: list[KeyGroup]
                        if single:
                            groups = list(zip(page))
                        else:
                            groups = []
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
