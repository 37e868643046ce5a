"""EXAMINING (SPEC §3.1): one EXAMINE task lists its key range and cuts it into partitions.

A job starts with one EXAMINE task over its whole scope. Once that task has filled its
first partition with the listing still going, it asks the storage for boundaries
(``Storage.key_splits``) and hands the rest of the scope to further EXAMINE tasks, one
per key range, which any worker lists at the same time; it lists on up to the first
boundary. The job moves to PROCESSING when the last range is done, its totals the sum of
all partitions.

Every commit is one transaction: the listing position, the cut in progress, the
partitions it completed, their results and progress, so a takeover resumes exactly. The
boundaries are committed before the ranges are created, so a takeover creates the same.
A handler that plans while examining (``plans_while_examining``) has each partition
planned to its end as it is listed: such a partition is created done, with its EXECUTE
tasks, and only the open-ended last one (keys written after the listing passed) is left
to PROCESSING.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from objectjobs.errors import StorageError
from objectjobs.handler import JobContext, JobHandler, KeyGroup
from objectjobs.models import JobState, Phase, Progress, ResultRecord
from objectjobs.partitioning import PartitionCutter
from objectjobs.ratelimit import TokenBucket
from objectjobs.store.interface import NewTask

if TYPE_CHECKING:
    from objectjobs.engine import TaskRunner

log = logging.getLogger("objectjobs.engine")

#: EXAMINING commits its position at least this often (and whenever it cuts partitions)
EXAMINE_COMMIT_S = 1.0
#: the PROCESS tasks of EXAMINE task n (one key range of the job) are numbered from
#: n * RANGE_SEQS: ranges examined at the same time never number two partitions alike
RANGE_SEQS = 1_000_000


class Examination:
    """One run of one EXAMINE task."""

    def __init__(
        self,
        runner: TaskRunner,
        handler: JobHandler,
        ctx: JobContext,
        limiter: TokenBucket | None,
    ) -> None:
        self.runner, self.handler, self.ctx, self.limiter = runner, handler, ctx, limiter
        # A job paced by objectsPerSecond lists at full speed here instead, so its totals
        # (the progress bar's end, the ETA) are known early; PROCESSING then paces the plan.
        self.planning = handler.plans_while_examining and limiter is None
        self.count_processed = ctx.dry_run or handler.processed_in_plan
        # the EXAMINE task's own state; ctx.state is the plan of the partition being filled
        self.state = ctx.state
        self.first_seq = ctx.task.seq * RANGE_SEQS
        # what the next commit writes
        self.partitions: list[NewTask] = []
        self.executions: list[NewTask] = []  # the EXECUTE tasks of partitions cut done
        self.results: list[ResultRecord] = []
        self.progress = Progress()
        self.committed, self.dirty = time.monotonic(), False

    async def run(self) -> None:
        ctx, task, store = self.ctx, self.ctx.task, self.runner.store
        await self.handler.prepare(ctx)
        existing = [
            t
            for t in await store.list_tasks(ctx.job.id, Phase.PROCESS)
            if self.first_seq <= t.seq < self.first_seq + RANGE_SEQS
        ]
        # the first task, once it split the job, examines up to the first boundary only
        splits: list[str] = self.state.get("splits") or []
        end = splits[0] if splits else task.end_key
        if splits:
            await self._add_ranges(splits)  # again: a crash may have come in between
        if existing and existing[-1].end_key == end:
            # the range's last partition exists: only the completion was lost
            await self._finish()
            return
        self.cutter = PartitionCutter.resumed(
            self.state.get("cutting"), existing, start=task.start_key, first_seq=self.first_seq
        )
        ctx.state = self.cutter.partition_state
        # a job is split once, by its first task, when its first partition is full (so a
        # job of one partition never is) and the rest of the listing is still ahead
        may_split = task.seq == 0 and task.end_key is None and "splits" not in self.state
        listing_ended = False
        while not listing_ended:
            listing_ended = True
            groups = self.runner.key_groups(self.handler, ctx, self.cutter.listed_to, end)
            async with contextlib.aclosing(groups):
                async for batch in groups:
                    await self._count(batch)
                    if may_split and self.partitions:
                        may_split = False
                        splits = await self._split(self.cutter.listed_to)
                        if splits:
                            self.state["splits"] = splits  # committed just below
                            end, listing_ended = splits[0], False
                    # A listing page takes milliseconds to count: commit when partitions
                    # are cut and about every second, not per page; a takeover repeats at
                    # most that second.
                    if self.partitions or time.monotonic() - self.committed >= EXAMINE_COMMIT_S:
                        await self._commit()
                    if not listing_ended:
                        await self._add_ranges(splits)
                        break  # and list on up to the range's new end
        if self.dirty:
            await self._commit()
        if self.planning and end is not None:
            # the listing reached the range's end: PROCESS has nothing left to list in it
            # (only the open-ended last partition catches keys written after the listing)
            ctx.state["planned_to"] = end
        last = self._cut(end)
        extra = self.handler.extra_tasks() if end is None else []
        await self.runner.checkpoint(
            ctx,
            key=None,
            progress=Progress(),
            partitions=[*extra, last],
            executions=self.executions,
        )
        await self._finish()

    async def _count(self, batch: list[KeyGroup]) -> None:
        """Add a batch of listed keys to the cut (and to the plan), cutting partitions."""
        cutter, size = self.cutter, self.runner.settings.worker.partition_objects
        # counted: groups added to the cut; unplanned: the first index not planned yet
        counted, unplanned, self.dirty = 0, 0, True
        while counted < len(batch):
            counted = cutter.fill(batch, counted, size)
            if cutter.objects >= size:
                if self.planning:
                    await self._plan(batch[unplanned:counted])
                    unplanned = counted
                self.partitions.append(self._cut(batch[counted - 1][0].key))
        if self.planning and unplanned < len(batch):
            await self._plan(batch[unplanned:])

    async def _plan(self, groups: Sequence[KeyGroup]) -> None:
        """Plan listed groups into the partition being filled; note how far it is planned."""
        ctx = self.ctx
        decided = await self.handler.plan(ctx, groups)
        ctx.state["planned_to"] = ctx.batch_after = groups[-1][0].key  # the next part's bound
        self.results.extend(decided.results)
        self.progress += decided.add_to(ctx.state.setdefault("plan", {}))

    def _cut(self, end_key: str | None) -> NewTask:
        partition = self.cutter.cut(end_key)
        self.ctx.state = self.cutter.partition_state
        if end_key is not None and partition.checkpoint == end_key:
            # planned to its end while listed: its PROCESS task would have nothing to do,
            # so it is created done, and its EXECUTE tasks with it
            partition = dataclasses.replace(partition, done=True)
            if not self.ctx.dry_run:
                self.executions.extend(self.handler.execute_tasks(partition))
        return partition

    async def _commit(self) -> None:
        self.state["cutting"] = self.cutter.to_dict()
        await self.runner.checkpoint(
            self.ctx,
            key=self.cutter.listed_to,
            progress=self.progress if self.count_processed else Progress(),
            state_data=self.state,
            results=self.results,
            partitions=self.partitions,
            executions=self.executions,
        )
        self.partitions.clear()
        self.executions.clear()
        self.results.clear()
        self.progress, self.committed, self.dirty = Progress(), time.monotonic(), False

    async def _split(self, listed_to: str) -> list[str]:
        """Boundaries cutting the rest of the job's scope, after ``listed_to``, into key
        ranges that other EXAMINE tasks list at the same time; [] to list on alone."""
        ctx, ranges = self.ctx, self.runner.settings.worker.examine_ranges
        if ranges < 2:
            return []
        try:
            return await ctx.storage.key_splits(
                ctx.job.bucket, prefix=ctx.prefix, start_after=listed_to, parts=ranges
            )
        except StorageError as exc:  # a guess that failed: the listing goes on alone
            log.info("job %s lists alone: %s", ctx.job.id, exc.message)
            return []

    async def _add_ranges(self, splits: Sequence[str]) -> None:
        """The EXAMINE tasks of the ranges after the first: (b1, b2], ..., (bn, end)."""
        ends: list[str | None] = [*splits[1:], None]
        await self.runner.store.add_tasks(
            self.ctx.job.id,
            Phase.EXAMINE,
            [
                NewTask(seq, start, end)
                for seq, (start, end) in enumerate(zip(splits, ends, strict=True), 1)
            ],
        )
        if self.runner.on_new_tasks is not None:
            self.runner.on_new_tasks()

    async def _finish(self) -> None:
        # the last range to finish moves the job on, with the totals of all partitions
        runner = self.runner
        await runner.store.complete_task(
            self.ctx.task.id, runner.worker_id, next_state=JobState.PROCESSING
        )
