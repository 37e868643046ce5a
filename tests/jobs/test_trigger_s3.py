"""TRIGGER_RECONCILIATION over HTTP against real S3 servers: Ceph RGW (topics through its
SNS-compatible API) and moto (SNS topics), versioned buckets, a local webhook receiver."""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus

import boto3
import pytest

from objectjobs.models import JobState, Outcome
from objectjobs.settings import Settings, StorageSettings
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import Storage
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
from tests.servers import S3Endpoint

SECRET = "s3-hook-secret"
KEYS = [
    "in/a b.csv",
    "in/plus+sign.csv",
    "in/ünï cödé/ß.csv",
    "in/x.txt",
    "in/deep/1.csv",
    "out/a.csv",
    "in/q?&=.csv",
]


@dataclass
class S3Env:
    storage: Storage
    new_topic: Callable[[], str]  # returns the topic ARN


@pytest.fixture(params=["rgw", "moto"])
async def s3env(request: pytest.FixtureRequest) -> AsyncIterator[S3Env]:
    endpoint: S3Endpoint = request.getfixturevalue("rgw" if request.param == "rgw" else "moto_s3")
    sns = boto3.client(
        "sns",
        endpoint_url=endpoint.endpoint_url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
    )
    # RGW also pushes live events for new PUTs to its own push-endpoint: a port held bound
    # but not listening (refused, and no receiver can get it), so only the job's
    # deliveries reach our receivers
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    dummy = f"http://127.0.0.1:{holder.getsockname()[1]}/rgw-live-events"

    def new_topic() -> str:
        name = f"oj-{uuid.uuid4().hex[:10]}"
        attributes = {"push-endpoint": dummy} if request.param == "rgw" else {}
        return str(sns.create_topic(Name=name, Attributes=attributes)["TopicArn"])

    storage = open_storage(
        StorageSettings(
            kind="s3",
            endpoint_url=endpoint.endpoint_url,
            region=endpoint.region,
            access_key=endpoint.access_key,
            secret_key=endpoint.secret_key,
        ),
        root=None,
    )
    yield S3Env(storage, new_topic)
    await storage.close()
    holder.close()


async def _bucket(env: S3Env, keys: list[str]) -> tuple[str, str]:
    bucket = f"trig-{uuid.uuid4().hex[:12]}"
    topic = env.new_topic()
    await env.storage.create_bucket(bucket)
    await env.storage.put_versioning(bucket, "Enabled")
    await env.storage.put_bucket_config(
        bucket,
        "notification",
        {
            "TopicConfigurations": [
                key_rule("TopicArn", topic, "csv-in", ["s3:ObjectCreated:*"], "in/", ".csv")
            ]
        },
    )
    for key in keys:
        await env.storage.put(bucket, key, key.encode())
    return bucket, topic


def _matching(keys: list[str]) -> Counter[tuple[str, str]]:
    return Counter(("csv-in", k) for k in keys if k.startswith("in/") and k.endswith(".csv"))


async def test_reconciles_a_bucket_exactly_and_leaves_it_unchanged(
    s3env: S3Env, store: JobStore, settings: Settings, owner: int
) -> None:
    bucket, topic = await _bucket(s3env, KEYS)
    # a second version of one key: only the current one is announced
    await s3env.storage.put(bucket, "in/a b.csv", b"second version")
    before = {k: await s3env.storage.head(bucket, k) for k in KEYS}
    async with Receiver() as receiver:
        cfg = with_targets(settings, {topic: webhook(receiver, SECRET)})
        final = await run_job(store, owner, cfg, s3env.storage, bucket)
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert delivered(receiver) == _matching(KEYS)
        # every version is handled; the older one of "in/a b.csv" is only counted
        assert (final.processed, final.failed) == (len(KEYS) + 1, 0)
        assert final.plan is not None and final.plan["noncurrent"]["objects"] == 1
        for request in receiver.accepted:
            assert signature_ok(SECRET, request.body, request.headers["x-objectjobs-signature"])
        for record in receiver.records():
            obj = record["s3"]["object"]
            head = before[unquote_plus(obj["key"])]
            assert obj["versionId"] == head.version_id
            assert (obj["eTag"], obj["size"]) == ((head.etag or "").strip('"'), head.size)
            assert record["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"

        receiver.reset()
        again = await run_job(store, owner, cfg, s3env.storage, bucket)
        assert again.state is JobState.COMPLETE and receiver.requests == 0

        new = ["in/new one.csv", "in/x.csv2", "in/b+.csv"]
        for key in new:
            await s3env.storage.put(bucket, key, b"n")
        receiver.reset()
        third = await run_job(store, owner, cfg, s3env.storage, bucket)
        assert third.state is JobState.COMPLETE
        assert delivered(receiver) == _matching(new)

        receiver.reset()
        forced = await run_job(store, owner, cfg, s3env.storage, bucket, force="true")
        assert forced.state is JobState.COMPLETE
        assert delivered(receiver) == _matching(KEYS + new)
    for key in KEYS:
        after = await s3env.storage.head(bucket, key)
        assert (after.etag, after.last_modified, after.version_id) == (
            before[key].etag,
            before[key].last_modified,
            before[key].version_id,
        )


@pytest.mark.parametrize("always_fail", [False, True])
async def test_retries_a_flaky_webhook_and_fails_on_a_broken_one(
    s3env: S3Env, store: JobStore, settings: Settings, owner: int, always_fail: bool
) -> None:
    keys = [f"in/{i} .csv" for i in range(8)]
    bucket, topic = await _bucket(s3env, keys)

    def decide(_request: object, attempt: int) -> int:
        return 502 if always_fail or attempt <= 2 else 204

    async with Receiver(decide) as receiver:
        cfg = with_targets(settings, {topic: webhook(receiver)})
        final = await run_job(store, owner, cfg, s3env.storage, bucket)
    results = await all_results(store, final.id)
    if always_fail:
        assert final.state is JobState.FAILED
        assert any("maxFailurePercent" in r for r in final.failure_reasons)
        assert final.failed == len(keys) and receiver.accepted == []
        assert {r.outcome for r in results} == {Outcome.FAILED}
    else:
        assert final.state is JobState.COMPLETE, final.failure_reasons
        assert delivered(receiver) == _matching(keys)
        assert set(receiver.attempts.values()) == {3}
        assert {r.outcome for r in results} == {Outcome.SUCCEEDED}
