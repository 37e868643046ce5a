# ruff: noqa: ASYNC221, ASYNC240 - a sequential benchmark: blocking between phases is fine
"""BATCH_REPLICATE benchmark, side by side with rclone and the server's raw copy ceiling.

1. N small objects bucket→bucket on Ceph RGW (server-side copies): objectjobs (one worker
   process) vs ``rclone copy --transfers 32 --checkers 32`` vs ``s3_bench_raw.py``'s
   copy rate (the server's ceiling with a near-zero-cost client), taken before and after
   the two contenders: RGW slows as its buckets fill, and the higher rate is the ceiling.
2. M local files local→local: objectjobs vs ``rclone copy``.

For objectjobs: objects/s from job creation to COMPLETE, peak RSS growth of this process
during the job (VmHWM after resetting it) and CPU seconds per 1,000 objects (this process
only; the servers are other processes). For rclone: its wall time, CPU and peak RSS from
the child's rusage.

usage: python bench/replicate.py [--s3-objects 20000] [--local-objects 100000]
                                 [--skip-raw] [--profile FILE] [--out FILE]
(``--s3-objects 0`` or ``--local-objects 0`` skips that part.)
Environment: BENCH_S3_OBJECTS / BENCH_LOCAL_OBJECTS override the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from pool import worker_processes  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from objectjobs.models import JobState, JobType, NewJob  # noqa: E402
from objectjobs.settings import Settings, StorageSettings, load_settings  # noqa: E402
from objectjobs.storage.factory import open_storage  # noqa: E402
from objectjobs.storage.interface import Storage  # noqa: E402
from objectjobs.store.sql import SqlJobStore  # noqa: E402
from objectjobs.worker import Worker, tune_gc  # noqa: E402
from tests import servers  # noqa: E402

BODY = 1024


def status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": after.ru_maxrss / 1024}


async def objectjobs_run(
    settings: Settings, storage: Storage, bucket: str, **params: str
) -> dict[str, float]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlJobStore(settings.database_url)
    await store.migrate()
    user = await store.create_user(f"bench{time.monotonic_ns()}", "admin", "x")
    db_path = Path(settings.database_url.removeprefix("sqlite:///"))
    # the embedded default's other worker processes (worker.processes), up before the job
    async with worker_processes(settings, db_path) as children:
        children_cpu0 = children.cpu_s()
        Path("/proc/self/clear_refs").write_text("5")
        rss0, cpu0 = status_bytes("VmRSS"), cpu_self()
        t = time.perf_counter()
        job, _ = await store.create_job(NewJob(JobType.BATCH_REPLICATE, bucket, params, user.id))
        tune_gc()  # as `objectjobs worker` does once started
        async with Worker(settings, store, storage).running():
            while True:
                got = await store.get_job(job.id)
                assert got is not None
                if not got.state.active:
                    break
                await asyncio.sleep(0.05)
        wall = time.perf_counter() - t
        cpu = cpu_self() - cpu0 + children.cpu_s() - children_cpu0
    await store.close()
    assert got.state is JobState.COMPLETE, got.failure_reasons
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "processes": 1 + len(children),
        "peak_rss_growth_mib": (status_bytes("VmHWM") - rss0) / 2**20,
        "processed": got.processed,
        "failed": got.failed,
    }


def bench_settings(data_dir: Path, storage: StorageSettings | None = None) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "worker": {"concurrency": 32, "partition_objects": 2500, "lease_s": 60, "heartbeat_s": 5},
    }
    if storage is not None:
        values["storage"] = storage
        # on S3 one process, as measured before worker.processes: its RGW shares our cores
        values["worker"]["processes"] = 1
    else:
        values["storage"] = {"kind": "local", "root": data_dir.parent / "buckets"}
    return load_settings(**values)


def make_files(directory: Path, n: int) -> None:
    directory.mkdir(parents=True)
    body = os.urandom(BODY)
    per_dir = 1000
    for d in range((n + per_dir - 1) // per_dir):
        sub = directory / f"d{d:04d}"
        sub.mkdir()
        for i in range(d * per_dir, min(n, (d + 1) * per_dir)):
            (sub / f"obj{i:07d}").write_bytes(body)


def figures(name: str, n: int, r: dict[str, float]) -> dict[str, Any]:
    out = {"tool": name, "objects": n, "objects_per_s": round(n / r["wall_s"], 1)}
    out["wall_s"] = round(r["wall_s"], 2)
    out["cpu_s_per_1000"] = round(1000 * r["cpu_s"] / n, 3)
    if "processes" in r:
        out["processes"] = r["processes"]
    for k in ("peak_rss_growth_mib", "peak_rss_mib"):
        if k in r:
            out[k] = round(r[k], 1)
    return out


def raw_ceiling(n: int, ep: Any, work: Path, when: str) -> dict[str, Any]:
    """``s3_bench_raw.py``'s copy rate on this server (its own bucket, a near-free client)."""
    out = work / "raw.json"
    raw_env = dict(
        os.environ,
        S3_ENDPOINT=ep.endpoint_url,
        AWS_ACCESS_KEY_ID=ep.access_key,
        AWS_SECRET_ACCESS_KEY=ep.secret_key,
    )
    subprocess.run(
        [
            sys.executable,
            str(servers.shared_ceph_dir() / "s3_bench_raw.py"),
            "--n",
            str(n),
            "--size",
            str(BODY),
            "--conns",
            "32",
            "--procs",
            "2",
            "--runs",
            "1",
            "--json",
            str(out),
        ],
        env=raw_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {
        "tool": f"raw ceiling (s3_bench_raw.py copy, 32 conns, 2 procs), {when}",
        "objects": n,
        "objects_per_s": json.loads(out.read_text())["median"]["copy"],
    }


async def s3_bench(n: int, work: Path, skip_raw: bool, profile: str | None) -> list[dict[str, Any]]:
    rgw = servers.start_rgw_server()
    try:
        ep = rgw.endpoint
        assert ep is not None
        # rclone's S3 backend refuses a custom CA bundle on its transport; loopback is http
        base_env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env = dict(
            base_env,
            RCLONE_CONFIG_RGW_TYPE="s3",
            RCLONE_CONFIG_RGW_PROVIDER="Ceph",
            RCLONE_CONFIG_RGW_ENDPOINT=ep.endpoint_url,
            RCLONE_CONFIG_RGW_ACCESS_KEY_ID=ep.access_key,
            RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=ep.secret_key,
            RCLONE_CONFIG_RGW_FORCE_PATH_STYLE="true",
        )
        files = work / "s3src"
        make_files(files, n)
        flags = ["--transfers", "32", "--checkers", "32"]
        # populate with rclone (fast), then copy bucket to bucket three ways
        subprocess.run(["rclone", "copy", str(files), "rgw:bench-src", *flags], env=env, check=True)
        storage_settings = StorageSettings(
            kind="s3",
            endpoint_url=ep.endpoint_url,
            access_key=SecretStr(ep.access_key),
            secret_key=SecretStr(ep.secret_key),
            max_connections=64,
        )
        # the server's copy rate is taken before and after the contenders (RGW slows as its
        # buckets grow): the higher of the two is the ceiling they are held to
        first_raw = None if skip_raw else raw_ceiling(n, ep, work, "before the others")
        settings = bench_settings(work / "oj-s3", storage_settings)
        storage = open_storage(settings.storage)
        await storage.create_bucket("bench-oj")
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        oj = await objectjobs_run(settings, storage, "bench-src", targetBucket="bench-oj")
        if prof:
            prof.disable()
            prof.dump_stats(profile + ".s3")
        again = await objectjobs_run(settings, storage, "bench-src", targetBucket="bench-oj")
        await storage.close()
        assert oj["processed"] == n and oj["failed"] == 0, oj
        rc = run_timed(["rclone", "copy", "rgw:bench-src", "rgw:bench-rclone", *flags], env)
        rc_again = run_timed(["rclone", "copy", "rgw:bench-src", "rgw:bench-rclone", *flags], env)
        rows = [
            figures("objectjobs (RGW server-side copy)", n, oj),
            figures("objectjobs second run (all identical)", n, again),
            figures("rclone copy --transfers 32 --checkers 32", n, rc),
            figures("rclone second run (all identical)", n, rc_again),
        ]
        if first_raw is not None:
            rows.append(first_raw)
        if not skip_raw:
            rows.append(raw_ceiling(n, ep, work, "after the others"))
        return rows
    finally:
        rgw.stop()


async def local_bench(n: int, work: Path, profile: str | None) -> list[dict[str, Any]]:
    root = work / "buckets"
    make_files(root / "src", n)
    settings = bench_settings(work / "oj-local")
    storage = open_storage(settings.storage, root=root)  # storage.copy_threads applies
    await storage.create_bucket("dst")
    # what the fill left dirty is written back before each contender starts (untimed):
    # otherwise whoever runs first also pays for the write-back of the files it reads
    os.sync()
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    oj = await objectjobs_run(settings, storage, "src", targetBucket="dst")
    if prof:
        prof.disable()
        prof.dump_stats(profile + ".local")
    assert oj["processed"] == n and oj["failed"] == 0, oj
    again = await objectjobs_run(settings, storage, "src", targetBucket="dst")
    os.sync()
    rc = run_timed(
        [
            "rclone",
            "copy",
            str(root / "src"),
            str(work / "rclone-dst"),
            "--transfers",
            "32",
            "--checkers",
            "32",
        ]
    )
    rc_again = run_timed(
        [
            "rclone",
            "copy",
            str(root / "src"),
            str(work / "rclone-dst"),
            "--transfers",
            "32",
            "--checkers",
            "32",
        ]
    )
    return [
        figures("objectjobs local→local", n, oj),
        figures("objectjobs second run (all identical)", n, again),
        figures("rclone copy local→local", n, rc),
        figures("rclone second run (all identical)", n, rc_again),
    ]


def table(title: str, rows: list[dict[str, Any]]) -> str:
    cols = [
        "tool",
        "objects",
        "objects_per_s",
        "wall_s",
        "cpu_s_per_1000",
        "peak_rss_growth_mib",
        "peak_rss_mib",
        "processes",
    ]
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--s3-objects", type=int, default=int(os.environ.get("BENCH_S3_OBJECTS", 20000))
    )
    ap.add_argument(
        "--local-objects", type=int, default=int(os.environ.get("BENCH_LOCAL_OBJECTS", 100000))
    )
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--profile", help="write cProfile stats of the objectjobs runs here")
    ap.add_argument("--out", help="also write the tables to this file")
    args = ap.parse_args()
    # tmpfs: the local benchmark measures the tools, not this machine's disk
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="oj-bench-repl-", dir=base))
    try:
        out = []
        if args.s3_objects:
            rows = asyncio.run(s3_bench(args.s3_objects, work, args.skip_raw, args.profile))
            out.append(table("RGW bucket→bucket", rows))
        if args.local_objects:
            rows = asyncio.run(local_bench(args.local_objects, work, args.profile))
            out.append(table("local→local", rows))
        print("\n\n".join(out))
        if args.out:
            Path(args.out).write_text("\n\n".join(out) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
