"""TRIGGER_RECONCILIATION throughput: N matching objects on the local driver, delivered as S3
event records to a webhook receiver and to RabbitMQ.

    python bench/triggers.py [--objects 50000] [--skip-amqp] [--out bench/results/triggers.md]

The objects are written beforehand through the local driver by a few child processes (not
measured). The receiver (tests/notify/receiver.py: asyncio streams, HTTP/1.1 keep-alive)
runs in its own process; RabbitMQ is started by tests/servers.py; each job (one in-process
worker, the default settings, SQLite job store) runs in a child process of its own, so the
peak RSS and the CPU reported are that job's. Events/s are counted over the EXECUTING phase
(the deliveries) and over the whole job; the CPU per event says what the machine's load
does not. Everything binds 127.0.0.1.
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
#: the job's state is polled on the job's own event loop (~2 ms a look): not too often
POLL_S = 0.25
CREATORS = 4


# --- the data ---------------------------------------------------------------------------


def create_objects(root: str, first: int, count: int) -> None:
    """Child process: write objects ``first`` to ``first + count - 1`` through the local
    driver (so each has the sidecar with its ETag that a PUT through us leaves)."""
    from objectjobs.storage.local import LocalStorage

    async def main() -> None:
        local = LocalStorage(Path(root))
        gate = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with gate:
                await local.put(BUCKET, f"data/{i // 1000:03d}/obj {i:06d}.json", b'{"n":1}')

        await asyncio.gather(*(put(i) for i in range(first, first + count)))
        await local.close()

    asyncio.run(main())


def create_all(root: Path, count: int) -> None:
    """The objects, written by CREATORS child processes at once: one driver's threads and
    event loop write only ~450 objects/s, which made the setup longer than the benchmark."""
    from objectjobs.storage.local import LocalStorage

    asyncio.run(LocalStorage(root).create_bucket(BUCKET))
    share = -(-count // CREATORS)
    ranges = [(first, min(share, count - first)) for first in range(0, count, share)]
    children = [
        subprocess.Popen([sys.executable, __file__, "--create", str(root), str(a), str(n)])
        for a, n in ranges
    ]
    for i, creator in enumerate(children):
        if creator.wait() != 0:
            raise RuntimeError(f"creator {i} failed with exit code {creator.returncode}")


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


# --- one job (in a child process) --------------------------------------------------------


async def run_job(
    root: Path, data: Path, config: dict[str, Any], targets: dict[str, Any]
) -> dict[str, Any]:
    from objectjobs.models import JobState, JobType, NewJob
    from objectjobs.settings import load_settings
    from objectjobs.storage.local import LocalStorage
    from objectjobs.store.sql import SqlJobStore
    from objectjobs.worker import Worker, tune_gc

    settings = load_settings(data_dir=data, notify={"targets": targets})
    local = LocalStorage(root)
    await local.put_bucket_config(BUCKET, "notification", config)
    store = SqlJobStore(settings.database_url)
    await store.migrate()
    user = await store.get_user_by_name("bench") or await store.create_user("bench", "admin", "x")
    job, _ = await store.create_job(NewJob(JobType.TRIGGER_RECONCILIATION, BUCKET, {}, user.id))
    tune_gc()  # as `objectjobs worker` does once started
    worker = Worker(settings, store, local)
    runner = asyncio.create_task(worker.run())
    start, cpu_start = time.perf_counter(), cpu_s()
    execute_start = execute_cpu = None
    try:
        while True:
            record = await store.get_job(job.id)
            assert record is not None
            if record.state is JobState.EXECUTING and execute_start is None:
                execute_start, execute_cpu = time.perf_counter(), cpu_s()
            if not record.state.active:
                break
            if time.perf_counter() - start > JOB_TIMEOUT_S:
                raise RuntimeError(f"job still {record.state} after {JOB_TIMEOUT_S}s")
            await asyncio.sleep(POLL_S)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await store.close()
        await local.close()
    end, cpu_end = time.perf_counter(), cpu_s()
    if record.state is not JobState.COMPLETE:
        raise RuntimeError(f"job ended {record.state}: {record.failure_reasons}")
    return {
        "processed": record.processed,
        "failed": record.failed,
        "total_s": end - start,
        "execute_s": end - (execute_start or start),
        "cpu_s": cpu_end - cpu_start,
        "execute_cpu_s": cpu_end - (execute_cpu or cpu_start),
    }


async def bench_webhook(root: Path, data: Path, port: int) -> dict[str, Any]:
    target = {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook", "hmac_secret": "k"}
    config = {"TopicConfigurations": [_rule("TopicArn", WEBHOOK_ARN, "bench-webhook")]}
    before = await asyncio.to_thread(receiver_stats, port)
    result = await run_job(root, data, config, {WEBHOOK_ARN: target})
    stats = await asyncio.to_thread(receiver_stats, port)
    result.update(
        received=stats["accepted"] - before["accepted"],
        peer=f"receiver {stats['cpu_s'] - before['cpu_s']:.1f} s CPU, "
        f"{stats['connections'] - before['connections']} connections",
    )
    return result


async def bench_amqp(root: Path, data: Path) -> dict[str, Any]:
    import aio_pika

    from tests.servers import start_rabbitmq

    server = start_rabbitmq()  # blocking, once, before the measurement
    try:
        broker = int((server.tmp / "rabbit.pid").read_text())
        connection = await aio_pika.connect(server.url)
        channel = await connection.channel()
        queue = await channel.declare_queue("bench-events", durable=True)
        target = {"kind": "amqp", "url": server.url, "routing_key": "bench-events"}
        config = {"QueueConfigurations": [_rule("QueueArn", AMQP_ARN, "bench-amqp")]}
        before = process_cpu_s(broker)
        result = await run_job(root, data, config, {AMQP_ARN: target})
        broker_cpu = process_cpu_s(broker) - before
        declared = await channel.declare_queue("bench-events", durable=True, passive=True)
        received = declared.declaration_result.message_count
        await queue.purge()
        await connection.close()
    finally:
        server.stop()
    result.update(received=received, peer=f"RabbitMQ {broker_cpu:.1f} s CPU")
    return result


def child(target: str, root: Path, data: Path, port: int) -> None:
    """The ``--job`` child: one target's job; its result is the last line of stdout."""
    logging.basicConfig(level=logging.WARNING)
    if target == "webhook":
        result = asyncio.run(bench_webhook(root, data, port))
    else:
        result = asyncio.run(bench_amqp(root, data))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result), flush=True)


# --- measuring ---------------------------------------------------------------------------


def cpu_s() -> float:
    """CPU seconds this process (every thread) used so far."""
    times = os.times()
    return times.user + times.system


def process_cpu_s(pid: int) -> float:
    """CPU seconds process ``pid`` used so far (its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receiver_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
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


def run_child(target: str, root: Path, port: int) -> dict[str, Any]:
    """One target's job in a child process of its own, so that its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix="oj-bench-trig-data-") as data:
        out = subprocess.run(
            [sys.executable, __file__, "--job", target, str(root), data, str(port)],
            check=True,
            stdout=subprocess.PIPE,
        ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
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
    parser.add_argument(
        "--create", nargs=3, metavar=("ROOT", "FIRST", "COUNT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--job", nargs=4, metavar=("TARGET", "ROOT", "DATA", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.create:
        create_objects(args.create[0], int(args.create[1]), int(args.create[2]))
        return
    if args.job:
        target, root, data, port = args.job
        child(target, Path(root), Path(data), int(port))
        return
    header = machine()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="oj-bench-trig-") as tmp:
        root = Path(tmp) / "buckets"
        root.mkdir()
        t0 = time.perf_counter()
        create_all(root, args.objects)
        print(f"created {args.objects} objects in {time.perf_counter() - t0:.1f}s", flush=True)
        proc, port = start_receiver()
        try:
            results["webhook"] = run_child("webhook", root, port)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        print("webhook", results["webhook"], flush=True)
        if not args.skip_amqp:
            results["amqp"] = run_child("amqp", root, 0)
            print("amqp", results["amqp"], flush=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [
        "# TRIGGER_RECONCILIATION benchmark (bench/triggers.py)",
        "",
        f"{args.objects} matching objects on the local driver, one in-process worker with the "
        "default settings (concurrency 16, up to 4 partitions at once, 10,000 objects per "
        "partition), SQLite job store, one event per object, HMAC signing on for the webhook. "
        "Each job runs in a process of its own; its CPU counts all its threads.",
        "",
        "Machine: " + header,
        "",
        f"Load average at the end: {load}",
        "",
        "| target | delivered | job total (s) | EXECUTING (s) | events/s (EXECUTING) | "
        "events/s (whole job) | job CPU per event, EXECUTING / whole (ms) | peak RSS (MiB) "
        "| peer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['received']} | {r['total_s']:.1f} | {r['execute_s']:.1f} | "
            f"{r['processed'] / r['execute_s']:.0f} | {r['processed'] / r['total_s']:.0f} | "
            f"{1000 * r['execute_cpu_s'] / r['processed']:.2f} / "
            f"{1000 * r['cpu_s'] / r['processed']:.2f} | {r['peak_rss_mib']:.0f} | {r['peer']} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
