"""TRIGGER_RECONCILIATION throughput: N matching objects on the local driver, delivered as S3
event records to a webhook receiver and to RabbitMQ.

    python bench/triggers.py [--objects 50000] [--skip-amqp] [--out bench/results/triggers.md]

The receiver (tests/notify/receiver.py: asyncio streams, HTTP/1.1 keep-alive) runs in its
own process; RabbitMQ is started by tests/servers.py; the job (one in-process worker, the
default settings, SQLite job store) runs in this process, so the peak RSS reported is the
job's (the objects are written by a child process beforehand). Events/s are counted over
the EXECUTING phase (the deliveries) and over the whole job. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BUCKET = "bench-triggers"
WEBHOOK_ARN = "arn:aws:sns:us-east-1:000000000000:bench-webhook"
AMQP_ARN = "arn:aws:sqs:us-east-1:000000000000:bench-amqp"
JOB_TIMEOUT_S = 900


def create_objects(root: str, count: int) -> None:
    """Child process: write ``count`` matching objects through the local driver."""
    from objectjobs.storage.local import LocalStorage

    async def main() -> None:
        local = LocalStorage(Path(root))
        await local.create_bucket(BUCKET)
        gate = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with gate:
                await local.put(BUCKET, f"data/{i // 1000:03d}/obj {i:06d}.json", b'{"n":1}')

        await asyncio.gather(*(put(i) for i in range(count)))
        await local.close()

    asyncio.run(main())


def _rule(arn_key: str, arn: str, rule_id: str) -> dict[str, Any]:
    return {
        "Id": rule_id,
        arn_key: arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {
            "Key": {
                "FilterRules": [
                    {"Name": "prefix", "Value": "data/"},
                    {"Name": "suffix", "Value": ".json"},
                ]
            }
        },
    }


async def run_job(
    root: Path, data: Path, config: dict[str, Any], targets: dict[str, Any]
) -> dict[str, Any]:
    from objectjobs.models import JobState, JobType, NewJob
    from objectjobs.settings import load_settings
    from objectjobs.storage.local import LocalStorage
    from objectjobs.store.sql import SqlJobStore
    from objectjobs.worker import Worker

    settings = load_settings(data_dir=data, notify={"targets": targets})
    local = LocalStorage(root)
    await local.put_bucket_config(BUCKET, "notification", config)
    store = SqlJobStore(settings.database_url)
    await store.migrate()
    user = await store.get_user_by_name("bench") or await store.create_user("bench", "admin", "x")
    job, _ = await store.create_job(NewJob(JobType.TRIGGER_RECONCILIATION, BUCKET, {}, user.id))
    worker = Worker(settings, store, local)
    runner = asyncio.create_task(worker.run())
    start = time.perf_counter()
    execute_start = None
    try:
        while True:
            record = await store.get_job(job.id)
            assert record is not None
            if record.state is JobState.EXECUTING and execute_start is None:
                execute_start = time.perf_counter()
            if not record.state.active:
                break
            if time.perf_counter() - start > JOB_TIMEOUT_S:
                raise RuntimeError(f"job still {record.state} after {JOB_TIMEOUT_S}s")
            await asyncio.sleep(0.1)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await store.close()
        await local.close()
    end = time.perf_counter()
    if record.state is not JobState.COMPLETE:
        raise RuntimeError(f"job ended {record.state}: {record.failure_reasons}")
    return {
        "processed": record.processed,
        "failed": record.failed,
        "total_s": end - start,
        "execute_s": end - (execute_start or start),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def receiver_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
        stats: dict[str, int] = json.loads(answer.read())
    return stats


def start_receiver() -> tuple[subprocess.Popen[bytes], int]:
    """The webhook receiver in its own process, once it answers."""
    from tests.servers import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.notify.receiver", "--port", str(port)], cwd=REPO, env=env
    )
    for _ in range(100):
        try:
            receiver_stats(port)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the webhook receiver did not start")


async def bench_webhook(root: Path, data: Path, port: int) -> dict[str, Any]:
    target = {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook", "hmac_secret": "k"}
    config = {"TopicConfigurations": [_rule("TopicArn", WEBHOOK_ARN, "bench-webhook")]}
    result = await run_job(root, data, config, {WEBHOOK_ARN: target})
    stats = await asyncio.to_thread(receiver_stats, port)
    result.update(
        received=stats["accepted"], distinct=stats["distinct"], peak_rss_mib=peak_rss_mib()
    )
    return result


async def bench_amqp(root: Path, data: Path) -> dict[str, Any]:
    import aio_pika

    from tests.servers import start_rabbitmq

    server = start_rabbitmq()  # blocking, once, before the measurement
    try:
        connection = await aio_pika.connect(server.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("bench-events", durable=True)
        target = {"kind": "amqp", "url": server.url, "routing_key": "bench-events"}
        config = {"QueueConfigurations": [_rule("QueueArn", AMQP_ARN, "bench-amqp")]}
        result = await run_job(root, data, config, {AMQP_ARN: target})
        declared = await channel.declare_queue("bench-events", durable=True, passive=True)
        received = declared.declaration_result.message_count
        await queue.purge()
        await connection.close()
    finally:
        server.stop()
    result.update(received=received, peak_rss_mib=peak_rss_mib())
    return result


def machine() -> str:
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"nproc={os.cpu_count()}, load average at the start {' '.join(load)}\n\n```\n{mem}\n```"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=50_000)
    parser.add_argument("--skip-amqp", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench/results/triggers.md"))
    parser.add_argument("--create", nargs=2, metavar=("ROOT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.create:
        create_objects(args.create[0], int(args.create[1]))
        return
    logging.basicConfig(level=logging.WARNING)
    header = machine()
    with tempfile.TemporaryDirectory(prefix="oj-bench-trig-") as tmp:
        root, data = Path(tmp) / "buckets", Path(tmp) / "data"
        root.mkdir()
        data.mkdir()
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--create", str(root), str(args.objects)], check=True
        )
        print(f"created {args.objects} objects in {time.perf_counter() - t0:.1f}s", flush=True)
        proc, port = start_receiver()
        try:
            results = {"webhook": asyncio.run(bench_webhook(root, data, port))}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        print("webhook", results["webhook"], flush=True)
        if not args.skip_amqp:
            results["amqp"] = asyncio.run(bench_amqp(root, data))
            print("amqp", results["amqp"], flush=True)
    lines = [
        "# TRIGGER_RECONCILIATION benchmark (bench/triggers.py)",
        "",
        f"{args.objects} matching objects on the local driver, one in-process worker with the "
        "default settings (concurrency 16, up to 4 partitions at once, 10,000 objects per "
        "partition), SQLite job store, one event per object, HMAC signing on for the webhook.",
        "",
        "Machine: " + header,
        "",
        "| target | delivered | job total (s) | EXECUTING (s) | events/s (EXECUTING) | "
        "events/s (whole job) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['received']} | {r['total_s']:.1f} | {r['execute_s']:.1f} | "
            f"{r['processed'] / r['execute_s']:.0f} | {r['processed'] / r['total_s']:.0f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
