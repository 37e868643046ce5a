"""A worker: claims leased tasks, runs them, keeps their leases alive, stops cancelled ones.

Runs inside ``objectjobs serve`` or alone as ``objectjobs worker``; any number of workers on
any number of nodes share one job store. A lease that stops being renewed (a killed worker)
expires and another worker takes the task over from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping

from objectjobs.engine import TaskRunner
from objectjobs.errors import JobStoreError, LeaseLost, ObjectJobsError
from objectjobs.handler import JobHandler
from objectjobs.logs import current_job_id
from objectjobs.metrics import Metrics
from objectjobs.models import JobState, JobType, Phase, Task
from objectjobs.settings import Settings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from objectjobs.wakeups import NodeWakeups

log = logging.getLogger("objectjobs.worker")

#: how often running tasks are checked for cancellation (SPEC: stop within about a second)
CANCEL_POLL_S = 0.5
#: a task attempted this many times (failed runs and takeovers) that fails again fails its job
MAX_TASK_ATTEMPTS = 5


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        *,
        worker_id: str | None = None,
        handlers: Mapping[JobType, JobHandler] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.store = store
        self.storage = storage
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._targets: dict[str, Storage] = {}
        self._running: dict[int, asyncio.Task[None]] = {}
        # EXAMINE tasks list their key range from start to end; where the storage gains
        # nothing from more listings at once, this worker claims no more than that, and
        # leaves the other ranges to other processes
        self._examining: set[int] = set()
        self._examine_limit = storage.capabilities.listings_per_process
        self._wake = asyncio.Event()
        # the node's other processes: woken when this one adds or finishes tasks
        self._wakeups = NodeWakeups(settings.data_dir / "wake")
        self.runner = TaskRunner(
            settings,
            store,
            storage,
            self._target_storage,
            self.worker_id,
            handlers,
            metrics,
            on_new_tasks=self._tasks_changed,
        )
        # tasks run in parallel per worker; each runs up to worker.concurrency object ops.
        # The node's worker processes share its task slots: a worker taking them all would
        # leave the other cores idle on a job of a few partitions.
        slots = max(1, min(8, settings.worker.concurrency // 4 or 1))
        self.max_tasks = -(-slots // settings.worker.processes)

    def _tasks_changed(self) -> None:
        """Tasks were added, or a task ended (which may open a job's next phase): this
        process claims again, and so do the node's others."""
        self._wake.set()
        self._wakeups.notify()

    def _target_storage(self, name: str) -> Storage:
        if name not in self._targets:
            # imported here: the core names no driver; wiring is the one place that does
            from objectjobs.wiring import open_target_storage

            self._targets[name] = open_target_storage(self.settings, name)
        return self._targets[name]

    async def run(self) -> None:
        """Work until cancelled; on cancellation, stop running tasks (their leases lapse and
        another worker resumes them)."""
        log.info("worker %s started", self.worker_id)
        self._wakeups.listen(self._wake.set)
        watcher = asyncio.create_task(self._watch_leases())
        try:
            while True:
                claimed = await self._fill()
                if not claimed:
                    self._wake.clear()
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that arrives as the wake-up does, and the worker would
                    # never stop
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.settings.worker.poll_s):
                            await self._wake.wait()
        finally:
            watcher.cancel()
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(watcher, *self._running.values(), return_exceptions=True)
            for target in self._targets.values():
                await target.close()
            self._wakeups.close()
            log.info("worker %s stopped", self.worker_id)

    async def _fill(self) -> bool:
        claimed = False
        while len(self._running) < self.max_tasks:
            full = 0 < self._examine_limit <= len(self._examining)
            try:
                task = await self.store.claim_task(
                    self.worker_id,
                    self.settings.worker.lease_s,
                    skip_phases=(Phase.EXAMINE,) if full else (),
                )
            except JobStoreError as exc:
                log.warning("claiming failed: %s", exc.message)
                return False
            if task is None:
                break
            claimed = True
            if task.id in self._running:  # the store never hands a worker its own task
                log.error("task %s claimed twice by %s", task.id, self.worker_id)
                continue
            if task.attempts > 0:
                log.info("took over task %s of job %s", task.id, task.job_id)
                if self.metrics is not None:
                    self.metrics.lease_takeovers.inc()
            if task.phase is Phase.EXAMINE:
                self._examining.add(task.id)
            self._running[task.id] = asyncio.create_task(self._run(task))
        return claimed

    async def _run(self, task: Task) -> None:
        # this asyncio task's context: every line logged for this job's work carries its id
        current_job_id.set(task.job_id)
        log.info(
            "working on task %s (%s #%s) of job %s",
            task.id,
            task.phase.value,
            task.seq,
            task.job_id,
        )
        try:
            await self.runner.run(task)
            log.info("finished task %s of job %s", task.id, task.job_id)
        except LeaseLost:
            log.info("lost the lease of task %s of job %s", task.id, task.job_id)
        except asyncio.CancelledError:
            log.info("stopped task %s of job %s", task.id, task.job_id)
        except ObjectJobsError as exc:
            log.warning("task %s of job %s: %s", task.id, task.job_id, exc.message)
            await self._give_back(task, exc.message)
        except Exception as exc:
            log.exception("task %s of job %s crashed", task.id, task.job_id)
            await self._give_back(task, f"internal error: {exc!r}")
        finally:
            self._running.pop(task.id, None)
            self._examining.discard(task.id)
            self._tasks_changed()

    async def _give_back(self, task: Task, reason: str) -> None:
        """Retry a failed task later (any worker, with backoff), or fail its job once the
        task has failed MAX_TASK_ATTEMPTS times."""
        try:
            if task.attempts + 1 >= MAX_TASK_ATTEMPTS:
                await self.store.finish_job(
                    task.job_id,
                    JobState.FAILED,
                    reason=f"{task.phase.value} task #{task.seq} failed "
                    f"{MAX_TASK_ATTEMPTS} times; last error: {reason}",
                )
            else:
                base = 10 * self.settings.worker.retry_base_s
                delay = min(60.0, base * 2.0**task.attempts)
                await self.store.release_task(task.id, self.worker_id, retry_in_s=delay)
        except ObjectJobsError as exc:  # the lease lapses; another worker will take it
            log.warning("could not give back task %s: %s", task.id, exc.message)

    async def _watch_leases(self) -> None:
        """Stop tasks whose job was cancelled or whose lease was lost (polled every half
        second, read-only) and renew the leases every ``heartbeat_s``."""
        worker = self.settings.worker
        since_renewal = 0.0
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            since_renewal += CANCEL_POLL_S
            ids = list(self._running)
            if not ids:
                continue
            try:
                if since_renewal >= worker.heartbeat_s:
                    since_renewal = 0.0
                    stop = await self.store.heartbeat(self.worker_id, ids, worker.lease_s)
                else:
                    stop = await self.store.stopped_tasks(self.worker_id, ids)
            except JobStoreError as exc:
                log.warning("heartbeat failed: %s", exc.message)
                continue
            for task_id in stop:
                running = self._running.get(task_id)
                if running is not None:
                    running.cancel()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Run the worker in the background for the duration of the block."""
        task = asyncio.create_task(self.run(), name=f"worker {self.worker_id}")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def tune_gc() -> None:
    """Tune the cyclic garbage collector for a worker process, once its start-up is done.

    Listings allocate millions of short-lived objects (pages, entries, parsed XML) that
    reference counting frees; at the default threshold (700 net allocations) the collector
    runs thousands of passes over the whole heap, about a fifth of a listing job's CPU.
    The start-up heap is frozen out of its passes and a pass runs every 50,000 allocations.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def run_worker(settings: Settings, store: JobStore, storage: Storage) -> None:
    """Run one worker until cancelled (``objectjobs worker``)."""
    await Worker(settings, store, storage).run()
