"""LIFECYCLE_UPDATE on the local driver (both job stores), and crash/resume in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from objectjobs.errors import AccessDenied, InvalidRequest
from objectjobs.handler import ExecBatch, JobContext, KeyGroup
from objectjobs.jobs.lifecycle_update import DELETE_CHUNK_MIN, DELETE_SPLIT, LifecycleUpdate
from objectjobs.models import JobState, JobType, NewJob, Outcome
from objectjobs.settings import Settings
from objectjobs.storage.interface import DeleteResult, ObjectMeta, Storage
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore
from tests.jobs.support import create_job, running_workers, wait_for
from tests.jobs.test_lifecycle_update import results, rules


def later(days: int = 40) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def keys(storage: Storage, bucket: str) -> list[str]:
    return [v.key async for page in storage.list_versions(bucket) for v in page]


async def test_local_bucket_policy_file(
    local: LocalStorage, store: JobStore, owner: int, settings: Settings
) -> None:
    await local.create_bucket("logs")
    for key, size in [("old/a", 10), ("old/b", 5000), ("keep/c", 10), ("tmp/d", 10)]:
        await local.put("logs", key, b"x" * size)
    await local.put("logs", "tagged/e", b"x", meta=ObjectMeta(tags={"gone": "yes"}))
    await local.put("logs", "tagged/f", b"x")
    upload = await local.create_upload("logs", "up/partial")
    await local.upload_part("logs", "up/partial", upload, 1, b"p" * 10)
    policy = {
        "Rules": [
            {
                "ID": "old-small",
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": "old/", "ObjectSizeLessThan": 1000}},
                "Expiration": {"Days": 30},
            },
            {
                "ID": "tags",
                "Status": "Enabled",
                "Filter": {"Tag": {"Key": "gone", "Value": "yes"}},
                "Expiration": {"Days": 1},
            },
            {
                "ID": "uploads",
                "Status": "Enabled",
                "Filter": {},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
            },
            {
                "ID": "cold",
                "Status": "Enabled",
                "Filter": {"Prefix": "tmp/"},
                "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}],
            },
        ]
    }
    # SPEC §5.2: the local driver's bucket configuration is this JSON file
    path = local.root / ".objectjobs" / "logs" / "lifecycle.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(policy))

    job = await create_job(store, owner, "logs", JobType.LIFECYCLE_UPDATE, asOf=later())
    async with running_workers(settings, store, local):
        job = await wait_for(store, job.id)
    assert job.state is JobState.COMPLETE, job.failure_reasons
    assert await keys(local, "logs") == ["keep/c", "old/b", "tagged/f", "tmp/d"]
    assert [u async for page in local.list_uploads("logs") for u in page] == []
    report = await results(store, job.id)
    outcome = {(r.key, r.action): r.outcome for r in report}
    assert outcome == {
        ("old/a", "expire"): Outcome.SUCCEEDED,
        ("tagged/e", "expire"): Outcome.SUCCEEDED,
        ("up/partial", "abortUpload"): Outcome.SUCCEEDED,
        ("tmp/d", "transition"): Outcome.SKIPPED,
    }
    (skip,) = [r for r in report if r.outcome is Outcome.SKIPPED]
    assert "no storage classes" in (skip.message or "")
    assert job.plan is not None and job.plan["expire"] == {"objects": 2, "bytes": 11}


async def test_policy_errors(
    local: LocalStorage, store: JobStore, owner: int, settings: Settings
) -> None:
    await local.create_bucket("bad")
    await local.put("bad", "k", b"x")
    handler = LifecycleUpdate()
    with pytest.raises(InvalidRequest, match="rule 1: Status"):
        await handler.validate(
            NewJob(JobType.LIFECYCLE_UPDATE, "bad", {"policy": rules({"Status": "On"})}, owner),
            local,
            settings,
        )
    with pytest.raises(InvalidRequest, match="asOf"):
        await handler.validate(
            NewJob(JobType.LIFECYCLE_UPDATE, "bad", {"asOf": "someday"}, owner), local, settings
        )
    await local.put_bucket_config("bad", "lifecycle", {"Rules": [{"Status": "Enabled"}]})
    job = await create_job(store, owner, "bad", JobType.LIFECYCLE_UPDATE)
    async with running_workers(settings, store, local):
        job = await wait_for(store, job.id)
    assert job.state is JobState.FAILED
    assert "bucket lifecycle configuration is invalid" in job.failure_reasons[0]
    assert await keys(local, "bad") == ["k"]


async def test_crash_and_resume_local(
    local: LocalStorage, store: JobStore, owner: int, settings: Settings
) -> None:
    await local.create_bucket("many")
    names = [f"k{i:05d}" for i in range(900)]
    for name in names:
        await local.put("many", name, b"x")
    await local.put("many", "z-keep", b"x")
    policy = rules({"Filter": {"Prefix": "k"}, "Expiration": {"Days": 1}})
    job = await create_job(
        store, owner, "many", JobType.LIFECYCLE_UPDATE, policy=policy, asOf=later()
    )
    async with running_workers(settings, store, local):
        await wait_for(store, job.id, lambda j: j.state is JobState.EXECUTING and j.processed > 0)
    # the worker was cancelled abruptly: its leases lapse; a fresh worker takes over
    mid = await store.get_job(job.id)
    assert mid is not None and mid.state is JobState.EXECUTING
    async with running_workers(settings, store, local):
        done = await wait_for(store, job.id)
    assert done.state is JobState.COMPLETE, done.failure_reasons
    assert await keys(local, "many") == ["z-keep"]
    # results are written with checkpoints: the batch in flight when the worker died was
    # applied but not recorded, and the takeover found those keys gone (nothing to redo)
    succeeded = [r.key for r in await results(store, done.id, "SUCCEEDED")]
    assert len(succeeded) == len(set(succeeded)) and set(succeeded) <= set(names)
    assert len(names) - len(succeeded) <= 1000 * 4  # at most one batch per running task
    assert done.failed == 0


class _RecordingLocal(LocalStorage):
    """The local driver recording the keys of every ``delete_many`` call; it answers an
    error for the keys in ``refuse`` and raises for a whole call that carries ``boom``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[list[str]] = []
        self.refuse: set[str] = set()
        self.boom = ""

    async def delete_many(
        self, bucket: str, items: Sequence[tuple[str, str | None]]
    ) -> list[DeleteResult]:
        self.calls.append([key for key, _ in items])
        if any(key == self.boom for key, _ in items):
            raise AccessDenied("not today")
        answers = iter(
            await super().delete_many(bucket, [i for i in items if i[0] not in self.refuse])
        )
        return [
            DeleteResult(key, vid, error_code="AccessDenied", error_message="refused")
            if key in self.refuse
            else next(answers)
            for key, vid in items
        ]


class _BatchRecorder(LifecycleUpdate):
    """LIFECYCLE_UPDATE recording the keys of every batch it executes."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def execute(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> ExecBatch:
        self.batches.append([g[0].key for g in groups])
        return await super().execute(ctx, groups)


async def test_a_batchs_deletes_are_a_few_calls_at_once(
    tmp_path: Path, store: JobStore, owner: int, settings: Settings
) -> None:
    """A batch's deletes go to the driver as a few calls at once; a key the store refuses,
    or every key of a call that raised, is a failure."""
    storage = _RecordingLocal(tmp_path / "rec")
    handler = _BatchRecorder()
    try:
        await storage.create_bucket("bulk")
        names = [f"k{i:04d}" for i in range(900)]
        for name in names:
            await storage.put("bulk", name, b"xy")
        storage.refuse = {"k0003", "k0500"}
        storage.boom = "k0850"
        job = await create_job(
            store,
            owner,
            "bulk",
            JobType.LIFECYCLE_UPDATE,
            policy=rules({"Expiration": {"Days": 1}}),
            asOf=later(),
            maxFailurePercent="100",
        )
        workers = running_workers(
            settings, store, storage, handlers={JobType.LIFECYCLE_UPDATE: handler}
        )
        async with workers:
            done = await wait_for(store, job.id)
    finally:
        await storage.close()
    assert done.state is JobState.COMPLETE, done.failure_reasons
    # up to DELETE_SPLIT calls of at least DELETE_CHUNK_MIN keys
    size = {id(b): max(DELETE_CHUNK_MIN, -(-len(b) // DELETE_SPLIT)) for b in handler.batches}
    expected = [
        b[i : i + size[id(b)]] for b in handler.batches for i in range(0, len(b), size[id(b)])
    ]
    assert sorted(storage.calls) == sorted(expected)
    assert sorted(k for c in storage.calls for k in c) == names
    (blown,) = [c for c in storage.calls if "k0850" in c]
    failed = {r.key: (r.error_code, r.message) for r in await results(store, done.id, "FAILED")}
    assert failed == {
        "k0003": ("AccessDenied", "refused"),
        "k0500": ("AccessDenied", "refused"),
        **{k: ("AccessDenied", "not today") for k in blown},
    }
    succeeded = await results(store, done.id, "SUCCEEDED")
    assert sorted(r.key for r in succeeded) == sorted(set(names) - set(failed))
    assert {(r.action, r.message) for r in succeeded} == {("expire", "rule r0")}
    assert (done.processed, done.failed, done.bytes_done) == (
        900 - len(failed),
        len(failed),
        2 * (900 - len(failed)),
    )
    assert await keys(storage, "bulk") == sorted(failed)


@pytest.mark.s3
async def test_crash_mid_batch_makes_no_second_marker(
    moto_s3: object, tmp_path: Path, settings: Settings
) -> None:
    from objectjobs.store.sql import SqlJobStore
    from tests.jobs.test_lifecycle_update import new_bucket, open_s3

    storage = open_s3(moto_s3, "moto")
    jobs = SqlJobStore(f"sqlite:///{tmp_path / 'crash.db'}")
    await jobs.migrate()
    try:
        owner = (await jobs.create_user("t", "admin", "x")).id
        bucket = await new_bucket(storage, "Enabled")
        names = [f"k{i:04d}" for i in range(300)]
        await asyncio.gather(*(storage.put(bucket, n, b"x") for n in names))
        policy = rules({"Expiration": {"Days": 1}})
        job = await create_job(
            jobs, owner, bucket, JobType.LIFECYCLE_UPDATE, policy=policy, asOf=later()
        )

        async def markers() -> int:
            found = [v async for p in storage.list_versions(bucket) for v in p]
            return sum(v.is_delete_marker for v in found)

        async with running_workers(settings, jobs, storage):
            await wait_for(jobs, job.id, lambda j: j.state is JobState.EXECUTING)
            while await markers() == 0:  # noqa: ASYNC110 - polling another process's effect
                await asyncio.sleep(0.01)
        mid = await jobs.get_job(job.id)
        assert mid is not None and mid.state is JobState.EXECUTING
        # cancelled before its checkpoint: the resumed worker redoes the batch
        async with running_workers(settings, jobs, storage):
            done = await wait_for(jobs, job.id)
        assert done.state is JobState.COMPLETE, done.failure_reasons
        listing = [
            (v.key, v.is_delete_marker, v.is_latest)
            async for p in storage.list_versions(bucket)
            for v in p
        ]
        assert listing == [x for n in names for x in ((n, True, True), (n, False, False))]
        assert done.failed == 0
    finally:
        await jobs.close()
        await storage.close()
