"""A small job handler for engine tests: it HEADs every object through the real storage and
fails the keys it is told to, permanently or transiently, so the engine's retry, failure
threshold and result recording can be observed."""

from __future__ import annotations

from collections.abc import Sequence

from objectjobs.errors import AccessDenied, TransientStorageError
from objectjobs.handler import ExecBatch, JobContext, JobHandler, KeyGroup, PlanBatch
from objectjobs.models import Outcome, ResultRecord
from objectjobs.storage.interface import ObjectVersion


class ProbeHandler(JobHandler):
    listing = "objects"

    def __init__(self, *, fail: set[str] = frozenset(), flaky: dict[str, int] | None = None):
        self.fail = set(fail)
        self.flaky = dict(flaky or {})  # key -> transient failures left
        self.attempts: dict[str, int] = {}

    async def plan(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> PlanBatch:
        decided = PlanBatch()
        for group in groups:
            for version in group:
                decided.add("touch", version.size)
                decided.evaluated += 1
        return decided

    async def execute(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> ExecBatch:
        versions = [v for g in groups for v in g]

        async def touch(version: ObjectVersion) -> int:
            self.attempts[version.key] = self.attempts.get(version.key, 0) + 1
            if version.key in self.fail:
                raise AccessDenied(f"refused {version.key}")
            if self.flaky.get(version.key, 0) > 0:
                self.flaky[version.key] -= 1
                raise TransientStorageError("slow down")
            info = await ctx.storage.head(ctx.job.bucket, version.key)
            return info.size

        outcomes = await ctx.run_each(touch, versions)
        done = ExecBatch()
        for version, outcome in zip(versions, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                code = getattr(outcome, "code", type(outcome).__name__)
                done.record(
                    ResultRecord(version.key, None, "touch", Outcome.FAILED, code, str(outcome))
                )
            else:
                done.record(ResultRecord(version.key, None, "touch", Outcome.SUCCEEDED), outcome)
        return done
