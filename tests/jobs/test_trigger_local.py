"""TRIGGER_RECONCILIATION on the local driver, delivering to a real HTTP server on 127.0.0.1
(both job stores): exact sets, the ledger, force, retries, failures, the time window."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import pytest

from objectjobs.errors import InvalidRequest
from objectjobs.jobs.trigger_reconciliation import TriggerReconciliation
from objectjobs.models import JobState, JobType, NewJob, Outcome
from objectjobs.settings import Settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore
from tests.notify.jobkit import (
    all_results,
    delivered,
    key_rule,
    run_job,
    signature_ok,
    webhook,
    with_targets,
)
from tests.notify.receiver import Receiver

TOPIC = "arn:aws:sns:us-east-1:123456789012:images"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:docs"
SECRET = "hook-secret"

IMAGES = ["img/a b.jpg", "img/x+y.jpg", "img/Grüße ü.jpg", "img/sub/q?=&.jpg"] + [
    f"img/n{i:03d}.jpg" for i in range(30)
]
DOCS = ["doc/r 1.txt", "doc/+plus"]
OTHERS = ["img/skip.png", "img/upper.JPG", "other/a.jpg", "imgx.jpg"]


async def _bucket(local: LocalStorage, name: str, keys: list[str]) -> None:
    await local.create_bucket(name)
    await local.put_bucket_config(
        name,
        "notification",
        {
            "TopicConfigurations": [
                key_rule("TopicArn", TOPIC, "images", ["s3:ObjectCreated:*"], "img/", ".jpg"),
                # removals are never reconciled, even where the key filter matches
                key_rule("TopicArn", TOPIC, "removed", ["s3:ObjectRemoved:*"], "img/"),
            ],
            "QueueConfigurations": [
                key_rule("QueueArn", QUEUE, "docs", ["s3:ObjectCreated:Put"], "doc/")
            ],
        },
    )
    for key in keys:
        await local.put(name, key, key.encode() * 3)


def _expected(keys: list[str]) -> Counter[tuple[str, str]]:
    rules = {"img/": "images", "doc/": "docs"}
    return Counter(
        (rules[k[:4]], k)
        for k in keys
        if (k.startswith("img/") and k.endswith(".jpg")) or k.startswith("doc/")
    )


async def test_delivers_exactly_the_matching_events_then_only_what_is_missing(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    keys = IMAGES + DOCS + OTHERS
    await _bucket(local, "t1", keys)
    before = {k: await local.head("t1", k) for k in keys}
    async with Receiver() as receiver:
        cfg = with_targets(
            settings, {TOPIC: webhook(receiver, SECRET), QUEUE: webhook(receiver, SECRET)}
        )
        await TriggerReconciliation().validate(
            NewJob(JobType.TRIGGER_RECONCILIATION, "t1", {}, owner), local, cfg
        )
        final = await run_job(store, owner, cfg, local, "t1")
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert delivered(receiver) == _expected(keys)
        assert (final.processed, final.failed) == (len(keys), 0)
        assert final.plan is not None
        matching = len(IMAGES) + len(DOCS)
        assert final.plan["emit"]["objects"] == matching
        assert final.plan["unmatched"]["objects"] == len(OTHERS)
        for request in receiver.accepted:
            assert signature_ok(SECRET, request.body, request.headers["x-objectjobs-signature"])
        for record in receiver.records():
            key = unquote_plus(record["s3"]["object"]["key"])
            head = before[key]
            assert record["s3"]["object"]["size"] == head.size
            assert record["s3"]["object"]["eTag"] == (head.etag or "").strip('"')
            assert record["s3"]["bucket"]["name"] == "t1"
            assert record["eventName"] == "ObjectCreated:Put"
            assert record["objectjobs"] == {
                "reconciliation": True,
                "jobId": final.id,
                "sentAt": record["objectjobs"]["sentAt"],
            }
        results = await all_results(store, final.id)
        assert Counter((r.action, r.outcome) for r in results) == {
            ("emit", Outcome.SUCCEEDED): matching
        }

        # a re-run delivers nothing
        receiver.reset()
        again = await run_job(store, owner, cfg, local, "t1")
        assert again.state is JobState.COMPLETE and receiver.requests == 0
        assert again.plan is not None and again.plan["skip"]["objects"] == matching
        assert "emit" not in again.plan or again.plan["emit"]["objects"] == 0
        assert {(r.action, r.outcome) for r in await all_results(store, again.id)} == {
            ("skip", Outcome.SKIPPED)
        }

        # new objects (and a rewritten one: a new ETag is a new event): only those
        new = ["img/new one.jpg", "doc/new+doc"]
        for key in new:
            await local.put("t1", key, b"new")
        await local.put("t1", "img/n000.jpg", b"rewritten")
        receiver.reset()
        third = await run_job(store, owner, cfg, local, "t1")
        assert third.state is JobState.COMPLETE
        assert delivered(receiver) == _expected([*new, "img/n000.jpg"])

        # force resends every matching event
        receiver.reset()
        forced = await run_job(store, owner, cfg, local, "t1", force="true")
        assert forced.state is JobState.COMPLETE
        assert delivered(receiver) == _expected(keys + new)
    # the job never wrote to the bucket
    for key in keys:
        if key != "img/n000.jpg":
            after = await local.head("t1", key)
            assert (after.etag, after.last_modified) == (
                before[key].etag,
                before[key].last_modified,
            )


async def test_modified_window_and_dry_run(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    keys = [f"img/{i}.jpg" for i in range(6)]
    await _bucket(local, "t2", keys)
    # files written by another tool: the listing has no ETag, the job HEADs them
    for i, key in enumerate(keys):
        stamp = datetime(2020 + i, 6, 1, tzinfo=UTC).timestamp()
        os.utime(local.root / "t2" / key, (stamp, stamp))
    async with Receiver() as receiver:
        cfg = with_targets(settings, {TOPIC: webhook(receiver), QUEUE: webhook(receiver)})
        dry = await run_job(
            store, owner, cfg, local, "t2", dryRun="true", modifiedAfter="2021-01-01T00:00:00Z"
        )
        assert dry.state is JobState.COMPLETE and receiver.requests == 0
        assert dry.plan is not None and dry.plan["emit"]["objects"] == 5
        final = await run_job(
            store,
            owner,
            cfg,
            local,
            "t2",
            modifiedAfter="2021-01-01T00:00:00Z",
            modifiedBefore="2024-01-01",
        )
        assert final.state is JobState.COMPLETE
        assert delivered(receiver) == Counter(("images", f"img/{i}.jpg") for i in (1, 2, 3))
        for record in receiver.records():
            assert record["eventTime"].startswith(f"202{record['s3']['object']['key'][4]}-06-01")


async def test_a_flaky_webhook_is_retried_to_success(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await _bucket(local, "t3", IMAGES)
    statuses = {1: 503, 2: 429}
    async with Receiver(lambda _r, attempt: statuses.get(attempt, 200)) as receiver:
        cfg = with_targets(settings, {TOPIC: webhook(receiver), QUEUE: webhook(receiver)})
        final = await run_job(store, owner, cfg, local, "t3")
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (len(IMAGES), 0)
    assert delivered(receiver) == _expected(IMAGES)
    assert set(receiver.attempts.values()) == {3}


@pytest.mark.parametrize(("status", "attempts"), [(500, 6), (400, 1)])
async def test_a_failing_webhook_fails_the_objects_and_trips_the_threshold(
    store: JobStore,
    local: LocalStorage,
    settings: Settings,
    owner: int,
    status: int,
    attempts: int,
) -> None:
    await _bucket(local, "t4", IMAGES)
    async with Receiver(lambda _r, _n: status) as receiver:
        cfg = with_targets(settings, {TOPIC: webhook(receiver), QUEUE: webhook(receiver)})
        final = await run_job(store, owner, cfg, local, "t4")
    assert final.state is JobState.FAILED
    assert any("maxFailurePercent" in r for r in final.failure_reasons), final.failure_reasons
    assert (final.processed, final.failed) == (0, len(IMAGES))
    # 5xx is retried (worker.retries=5), another 4xx is permanent: one attempt
    assert set(receiver.attempts.values()) == {attempts}
    assert receiver.accepted == []
    results = await all_results(store, final.id)
    assert {(r.action, r.outcome, r.error_code) for r in results} == {
        ("emit", Outcome.FAILED, "DeliveryFailed")
    }
    assert all(f"HTTP {status}" in (r.message or "") for r in results)


async def test_without_a_target_or_a_configuration_the_job_is_refused(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int
) -> None:
    await _bucket(local, "t5", ["img/a.jpg"])
    handler = TriggerReconciliation()
    job = NewJob(JobType.TRIGGER_RECONCILIATION, "t5", {}, owner)
    only_topic = with_targets(settings, {TOPIC: webhook(Receiver())})
    with pytest.raises(InvalidRequest, match="sqs:us-east-1:123456789012:docs"):
        await handler.validate(job, local, only_topic)
    # created anyway (e.g. the configuration changed since): FAILED with the reason
    final = await run_job(store, owner, only_topic, local, "t5")
    assert final.state is JobState.FAILED
    assert any(QUEUE in r for r in final.failure_reasons), final.failure_reasons

    await local.create_bucket("t6")
    with pytest.raises(InvalidRequest, match="no notification configuration"):
        await handler.validate(
            NewJob(JobType.TRIGGER_RECONCILIATION, "t6", {}, owner), local, only_topic
        )
