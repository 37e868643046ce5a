"""LIFECYCLE_UPDATE expiration throughput, side by side with ``rclone delete --min-age``.

    python bench/lifecycle.py [--rgw-objects 50000] [--local-files 200000]
                              [--skip-rgw] [--skip-local] [--out bench/results/lifecycle.md]

Each side gets fresh, identical data (an unversioned bucket / a directory of 1-byte objects).
Ours: a LIFECYCLE_UPDATE job, ``Expiration: Days=1`` on every key with ``asOf`` two days
ahead, run by one in-process worker (SQLite job store) — timed from job creation to
COMPLETE, so it includes EXAMINING and PROCESSING (two extra listings) besides the deletes.
rclone: ``rclone delete --min-age 1s --use-server-modtime`` once the newest object is older
than 1 s: the honest equivalent — an age filter that matches every object, judged on the
listing's LastModified like ours (without ``--use-server-modtime`` rclone would HEAD every
object for its own mtime metadata). rclone gets ``--checkers 32 --transfers 32``, the
same parallelism as our ``worker.concurrency``. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

POLL_S = 0.1  # the bench's own job polling: phase times are this coarse, its CPU counts
POLICY = '{"Rules": [{"ID": "all", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}'


def cpu_s() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


async def run_ours(
    storage: Any, bucket: str, data_dir: Path, storage_settings: Any = None
) -> dict[str, float]:
    """Our job, its first worker in this process; with ``storage_settings`` (the local
    driver's), the embedded default's other worker processes beside it (worker.processes)."""
    from pool import worker_processes

    from objectjobs.settings import load_settings
    from objectjobs.store.sql import SqlJobStore

    os.makedirs(data_dir, exist_ok=True)
    db_path = data_dir / "jobs.db"
    extra: dict[str, Any] = {"database": {"url": f"sqlite:///{db_path}"}}
    if storage_settings is not None:
        extra["storage"] = storage_settings
    else:
        extra["worker"] = {"processes": 1}
    settings = load_settings(data_dir=data_dir, **extra)
    # poll_s stays the default: a worker claims again as soon as one of its tasks ends
    settings.worker.concurrency, settings.worker.partition_objects = 32, 10_000
    store = SqlJobStore(f"sqlite:///{db_path}")
    await store.migrate()
    owner = (await store.create_user(f"bench-{uuid.uuid4().hex[:6]}", "admin", "x")).id
    as_of = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    async with worker_processes(settings, db_path) as children:
        children_cpu0 = children.cpu_s()
        result = await _run_job(settings, store, storage, bucket, owner, as_of)
        result["cpu_s"] += children.cpu_s() - children_cpu0
    result["processes"] = 1 + len(children)
    await store.close()
    return result


async def _run_job(
    settings: Any, store: Any, storage: Any, bucket: str, owner: int, as_of: str
) -> dict[str, float]:
    from objectjobs.models import JobState, JobType, NewJob
    from objectjobs.worker import Worker, tune_gc

    cpu0, t0 = cpu_s(), time.perf_counter()
    job, _ = await store.create_job(
        NewJob(JobType.LIFECYCLE_UPDATE, bucket, {"policy": POLICY, "asOf": as_of}, owner)
    )
    tune_gc()  # as `objectjobs worker` does once started
    worker = Worker(settings, store, storage)
    runner = asyncio.create_task(worker.run())
    phases: dict[str, float] = {}
    phase_cpu: dict[str, float] = {}
    try:
        while True:
            current = await store.get_job(job.id)
            assert current is not None
            phases.setdefault(current.state.value, time.perf_counter() - t0)
            phase_cpu.setdefault(current.state.value, cpu_s() - cpu0)
            if not current.state.active:
                break
            await asyncio.sleep(POLL_S)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    if current.state is not JobState.COMPLETE:
        raise RuntimeError(f"job ended {current.state}: {current.failure_reasons}")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "objects": current.processed,
        "failed": current.failed,
        "examine_s": phases.get("PROCESSING", 0.0),
        "process_s": phases.get("EXECUTING", 0.0) - phases.get("PROCESSING", 0.0),
        "execute_s": wall - phases.get("EXECUTING", 0.0),
        "examine_cpu": phase_cpu.get("PROCESSING", 0.0),
        "process_cpu": phase_cpu.get("EXECUTING", 0.0) - phase_cpu.get("PROCESSING", 0.0),
        "execute_cpu": cpu - phase_cpu.get("EXECUTING", 0.0),
    }


def run_rclone(target: str, env: dict[str, str]) -> dict[str, float]:
    time.sleep(1.5)  # every object is now older than --min-age
    cmd = [
        "rclone",
        "delete",
        target,
        "--min-age",
        "1s",
        "--use-server-modtime",
        "--checkers",
        "32",
        "--transfers",
        "32",
    ]
    start = time.perf_counter()
    # rclone's S3 backend refuses a custom CA bundle on its transport; loopback is http
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = subprocess.Popen(cmd, env={**base, **env}, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rclone failed: {err[-2000:]!r}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": usage.ru_utime + usage.ru_stime}


async def fill_s3(storage: Any, bucket: str, count: int) -> None:
    await storage.create_bucket(bucket)
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            await storage.put(bucket, f"obj/{i:08d}", b"x")

    for start in range(0, count, 5000):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 5000))))
        print(f"  {bucket}: {min(count, start + 5000)} objects", flush=True)


async def count_s3(storage: Any, bucket: str) -> int:
    return sum([len(p) async for p in storage.list_versions(bucket)])


def settle_disk() -> None:
    """Write back what is dirty before a contender starts (untimed). The fill leaves
    hundreds of MB of new files to flush, and deletes on a ``discard`` mount wait on the
    disk: without this, whoever runs first also pays for the fill's write-back."""
    os.sync()


def fill_local(root: Path, bucket: str, count: int) -> None:
    base = root / bucket
    for i in range(count):
        d = base / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{i:08d}", "wb") as f:
            f.write(b"x")


async def bench_rgw(count: int, work: Path) -> dict[str, Any]:
    from pydantic import SecretStr

    from objectjobs.settings import StorageSettings
    from objectjobs.storage.factory import open_storage
    from objectjobs.storage.s3 import FULL_S3
    from tests.servers import start_rgw_server

    server = start_rgw_server()
    try:
        ep = server.endpoint
        assert ep is not None
        settings = StorageSettings(
            kind="s3",
            endpoint_url=ep.endpoint_url,
            region=ep.region,
            access_key=SecretStr(ep.access_key),
            secret_key=SecretStr(ep.secret_key),
            max_connections=64,
        )
        import dataclasses

        storage = open_storage(
            settings, capabilities=dataclasses.replace(FULL_S3, replication_config=False)
        )
        ours_bucket, theirs_bucket = (
            f"lc-ours-{uuid.uuid4().hex[:8]}",
            f"lc-rc-{uuid.uuid4().hex[:8]}",
        )
        t = time.perf_counter()
        await fill_s3(storage, ours_bucket, count)
        await fill_s3(storage, theirs_bucket, count)
        print(f"rgw: filled 2 x {count} in {time.perf_counter() - t:.0f}s", flush=True)
        ours = await run_ours(storage, ours_bucket, work / "rgw")
        ours["left"] = await count_s3(storage, ours_bucket)
        env = {
            "RCLONE_CONFIG_RGW_TYPE": "s3",
            "RCLONE_CONFIG_RGW_PROVIDER": "Ceph",
            "RCLONE_CONFIG_RGW_ENDPOINT": ep.endpoint_url,
            "RCLONE_CONFIG_RGW_ACCESS_KEY_ID": ep.access_key,
            "RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY": ep.secret_key,
            "RCLONE_CONFIG_RGW_FORCE_PATH_STYLE": "true",
        }
        theirs = run_rclone(f"rgw:{theirs_bucket}", env)
        theirs["left"] = await count_s3(storage, theirs_bucket)
        await storage.close()
        return {"objects": count, "ours": ours, "rclone": theirs}
    finally:
        server.stop()


async def bench_local(count: int, work: Path, *, rclone_first: bool) -> dict[str, Any]:
    """Both contenders on local files, the one that runs first filled first. Run in both
    orders, so that neither always meets the disk in the state the other one left it in
    (on this machine's disk, deletes and creates are paced by what it did just before;
    see bench/RESULTS.md)."""
    from objectjobs.storage.local import LocalStorage

    root = work / ("buckets-rclone-first" if rclone_first else "buckets")
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for bucket in ("theirs", "ours") if rclone_first else ("ours", "theirs"):
        fill_local(root, bucket, count)
    print(f"local: filled 2 x {count} in {time.perf_counter() - t:.0f}s", flush=True)
    result: dict[str, Any] = {"objects": count}
    for who in ("rclone", "ours") if rclone_first else ("ours", "rclone"):
        settle_disk()
        if who == "rclone":
            result[who] = run_rclone(str(root / "theirs"), {})
            result[who]["left"] = sum(len(f) for _, _, f in os.walk(root / "theirs"))
            continue
        storage = LocalStorage(root)
        result[who] = await run_ours(
            storage, "ours", work / f"{root.name}-jobs", {"kind": "local", "root": root}
        )
        result[who]["left"] = (
            sum(len(f) for _, _, f in os.walk(root / "ours")) if (root / "ours").exists() else 0
        )
        await storage.close()
    return result


def table(name: str, r: dict[str, Any]) -> str:
    n = r["objects"]
    rows = [
        f"### {name}: {n} objects",
        "",
        "| contender | wall s | objects/s | CPU s | objects left |",
        "|---|---|---|---|---|",
    ]
    for who in ("ours", "rclone"):
        x = r[who]
        rate = n / x["wall_s"]
        rows.append(f"| {who} | {x['wall_s']:.1f} | {rate:.0f} | {x['cpu_s']:.1f} | {x['left']} |")
    o = r["ours"]
    rows += [
        "",
        f"ours by phase (wall / CPU s): EXAMINING {o['examine_s']:.1f} / {o['examine_cpu']:.1f}, "
        f"PROCESSING {o['process_s']:.1f} / {o['process_cpu']:.1f}, "
        f"EXECUTING {o['execute_s']:.1f} / {o['execute_cpu']:.1f}; "
        f"processed {o['objects']}, failed {o['failed']}; {o['processes']} worker "
        f"process(es): CPU s in the table includes the children's, by phase only this one's",
        "",
    ]
    return "\n".join(rows)


def machine() -> str:
    free = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
    return f"{platform.platform()}, nproc={os.cpu_count()}\n\n```\n{free}```\n"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rgw-objects", type=int, default=50_000)
    ap.add_argument("--local-files", type=int, default=200_000)
    ap.add_argument("--skip-rgw", action="store_true")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "lifecycle.md"))
    # where the data goes: the system's temporary directory (this machine's disk, whose
    # unlinks wait on the device) by default; --dir /dev/shm measures on tmpfs, where
    # only the tools' CPU sets the pace
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load0 = os.getloadavg()
    parts = ["# LIFECYCLE_UPDATE vs rclone delete --min-age", "", machine()]
    with tempfile.TemporaryDirectory(prefix="oj-bench-lc-", dir=args.dir) as tmp:
        work = Path(tmp)
        if not args.skip_rgw:
            parts.append(
                table("Ceph RGW (unversioned bucket)", await bench_rgw(args.rgw_objects, work))
            )
            print(parts[-1], flush=True)
        if not args.skip_local:
            for rclone_first in (False, True):
                first = "rclone" if rclone_first else "ours"
                result = await bench_local(args.local_files, work, rclone_first=rclone_first)
                parts.append(table(f"local directory, {first} first", result))
                print(parts[-1], flush=True)
    load1 = os.getloadavg()
    parts.insert(
        2,
        f"{started}: `python bench/lifecycle.py {' '.join(sys.argv[1:])}`; load average "
        f"(1/5/15 min) {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f} at the start, "
        f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f} at the end\n",
    )
    write(Path(args.out), "\n".join(parts) + "\n")


def write(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    # a plain kill still stops the servers this started (the finally blocks run)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main())
