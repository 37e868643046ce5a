"""TRIGGER_RECONCILIATION to a real RabbitMQ, and a worker dying mid-delivery (in-process:
its asyncio task is cancelled, its leases lapse, a fresh worker resumes)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from urllib.parse import unquote_plus

import aio_pika
import pytest

from objectjobs.jobs import trigger_reconciliation
from objectjobs.models import JobState, JobType
from objectjobs.settings import NotifyTargetSettings, Settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore
from tests.jobs.support import create_job, running_workers, wait_for
from tests.notify.jobkit import delivered, key_rule, run_job, webhook, with_targets
from tests.notify.receiver import Receiver

ARN = "arn:aws:sqs:us-east-1:123456789012:reconcile"


async def _bucket(local: LocalStorage, name: str, keys: list[str]) -> None:
    await local.create_bucket(name)
    await local.put_bucket_config(
        name,
        "notification",
        {
            "QueueConfigurations": [
                key_rule("QueueArn", ARN, "all-logs", ["s3:ObjectCreated:*"], suffix=".log")
            ]
        },
    )
    for key in keys:
        await local.put(name, key, b"x" * (len(key) % 7))


async def test_events_reach_a_rabbitmq_exchange_once(
    store: JobStore, local: LocalStorage, settings: Settings, owner: int, rabbitmq_url: str
) -> None:
    keys = [f"logs/{i:03d} ü+.log" for i in range(60)] + ["logs/not-a-log.txt"]
    await _bucket(local, "q1", keys)
    connection = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await connection.channel()
        name = f"oj-events-{uuid.uuid4().hex[:8]}"
        exchange = await channel.declare_exchange(
            name, aio_pika.ExchangeType.DIRECT, auto_delete=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="s3")
        target = NotifyTargetSettings(
            kind="amqp", url=rabbitmq_url, exchange=name, routing_key="s3"
        )
        cfg = with_targets(settings, {ARN: target})
        final = await run_job(store, owner, cfg, local, "q1")
        assert final.state is JobState.COMPLETE, final.failure_reasons
        got: Counter[str] = Counter()
        ids = set()
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            [record] = json.loads(message.body)["Records"]
            assert record["objectjobs"]["reconciliation"] is True
            assert record["s3"]["configurationId"] == "all-logs"
            got[unquote_plus(record["s3"]["object"]["key"])] += 1
            ids.add(message.message_id)
        assert got == Counter(k for k in keys if k.endswith(".log"))
        assert len(ids) == len(got)  # the message id names the event

        again = await run_job(store, owner, cfg, local, "q1")
        assert again.state is JobState.COMPLETE
        await asyncio.sleep(0.2)
        assert await queue.get(no_ack=True, fail=False) is None
    finally:
        await connection.close()


async def test_a_worker_dying_mid_job_loses_no_event_and_repeats_only_in_flight_ones(
    store: JobStore,
    local: LocalStorage,
    settings: Settings,
    owner: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a small ledger lag, so the bound below says something about 300 events
    monkeypatch.setattr(trigger_reconciliation, "MAX_UNRECORDED", 8)
    keys = [f"k/{i:04d}.log" for i in range(300)]
    await _bucket(local, "q2", keys)
    async with Receiver(delay_s=0.005) as receiver:
        # a short lease: the takeover must not wait long
        cfg = with_targets(settings, {ARN: webhook(receiver)}, lease_s=3.0)
        # three partitions, run in parallel by the worker
        cfg.worker.partition_objects = 100
        job = await create_job(store, owner, "q2", JobType.TRIGGER_RECONCILIATION)
        async with running_workers(cfg, store, local) as [worker]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            # polling the receiver's counter: it has no event to wait on
            while receiver.accepted_count < 60 and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            tasks = min(worker.max_tasks, 3)
        # leaving the block cancelled the worker: its leases lapse without any cleanup
        mid = await store.get_job(job.id)
        assert mid is not None and mid.state is JobState.EXECUTING
        assert 60 <= receiver.accepted_count < len(keys)
        async with running_workers(cfg, store, local):
            final = await wait_for(store, job.id, timeout=90)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (len(keys), 0)
    got = delivered(receiver)
    assert set(got) == {("all-logs", k) for k in keys}
    duplicates = sum(got.values()) - len(got)
    # repeated: per task at most those in flight, those waiting for the ledger (under
    # MAX_UNRECORDED plus the concurrency) and those of the transaction being committed
    concurrency = cfg.worker.concurrency
    bound = tasks * (concurrency + 2 * (8 + concurrency))
    assert duplicates <= bound, (duplicates, bound)
    assert max(got.values()) <= 2
