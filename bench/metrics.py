"""METRIC_RECONCILIATION throughput, side by side with ``rclone size`` on the same data, and on
Ceph RGW with the raw listing ceiling (../shared/ceph/s3_bench_raw.py's hand-rolled client).

    python bench/metrics.py [--local-files 200000] [--rgw-objects 50000] [--skip-local]
                            [--skip-rgw] [--out bench/results/metrics.md]

Each contender runs in its own child process; wall time, CPU seconds (user+sys) and peak RSS
are read from that child's rusage (``os.wait4``). Our "job" row is the whole job, from
create to COMPLETE, with the CPU seconds its worker processes spent in that time (local:
the embedded default's, one per core; RGW: one): EXAMINING (one listing of every version,
in key ranges listed at once, counted as it goes), PROCESSING (keys written since),
EXECUTING (uploads, the record). rclone size lists once and counts current objects only.
Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RAW_CLIENT = REPO.parent / "shared" / "ceph" / "s3_bench_raw.py"


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; its wall time, CPU seconds, peak RSS (MiB) and stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {out[-2000:]!r}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "stdout": out.decode(errors="replace"),
    }


# --- the job, in a child process ------------------------------------------------------------


async def job_child(kind: str, bucket: str, root: str, endpoint: dict[str, str]) -> None:
    from pool import worker_processes

    from objectjobs.models import JobState, JobType, NewJob
    from objectjobs.settings import S3EndpointSettings, load_settings
    from objectjobs.storage.factory import open_storage
    from objectjobs.store.sql import SqlJobStore
    from objectjobs.worker import Worker, tune_gc

    data = Path(tempfile.mkdtemp(prefix="oj-bench-"))
    db_path = data / "jobs.db"
    # the worker's default polling, as `objectjobs worker` runs: it claims the next task as
    # soon as one ends; a 50 ms poll spent ~13% of the job's Python time probing for work.
    # Local: the embedded default's worker processes (one per core), which list the job's
    # key ranges at once. S3: one process (its listing is not cut: one directory of keys).
    extra: dict[str, Any] = {"database": {"url": f"sqlite:///{db_path}"}}
    if kind == "local":
        extra["storage"] = {"kind": "local", "root": root}
    else:
        extra["worker"] = {"processes": 1}
    settings = load_settings(data_dir=data, **extra)
    store = SqlJobStore(f"sqlite:///{db_path}")
    await store.migrate()
    if kind == "local":
        storage = open_storage(settings.storage, root=Path(root))
    else:
        storage = open_storage(S3EndpointSettings(**endpoint), root=None)  # type: ignore[arg-type]
    user = await store.create_user("bench", "admin", "x")
    async with worker_processes(settings, db_path) as children:
        children_cpu0 = children.cpu_s()
        cpu_start = time.process_time()
        job, _ = await store.create_job(NewJob(JobType.METRIC_RECONCILIATION, bucket, {}, user.id))
        tune_gc()  # as `objectjobs worker` does once started
        worker = Worker(settings, store, storage)
        async with worker.running():
            while True:
                current = await store.get_job(job.id)
                assert current is not None
                if not current.state.active:
                    break
                # polled gently (each look is a store read in the measured process); the
                # job's time is taken from its own create and complete times, not this loop
                await asyncio.sleep(0.2)
        children_cpu = children.cpu_s() - children_cpu0
        processes = 1 + len(children)
    cpu = time.process_time() - cpu_start + children_cpu
    assert current.state is JobState.COMPLETE, current.failure_reasons
    assert current.complete_time is not None
    elapsed = (current.complete_time - current.create_time).total_seconds()
    print(
        json.dumps(
            {
                "job_s": elapsed,
                "job_cpu_s": cpu,
                "processed": current.processed,
                "usage": current.usage,
                "processes": processes,
            }
        )
    )
    await storage.close()
    await store.close()
    shutil.rmtree(data, ignore_errors=True)


# --- data sets ------------------------------------------------------------------------------


def make_local(root: Path, bucket: str, count: int) -> None:
    base = root / bucket
    for d in range(100):
        (base / f"dir{d:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        with open(base / f"dir{i % 100:03d}" / f"file-{i:07d}", "wb") as f:
            f.write(b"m" * (i % 512))


def rclone_env(endpoint: dict[str, str]) -> dict[str, str]:
    # rclone refuses a custom CA bundle on a plain-http endpoint; it has no use for one here
    inherited = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return {
        **inherited,
        "RCLONE_CONFIG_RGW_TYPE": "s3",
        "RCLONE_CONFIG_RGW_PROVIDER": "Ceph",
        "RCLONE_CONFIG_RGW_ENDPOINT": endpoint["endpoint_url"],
        "RCLONE_CONFIG_RGW_ACCESS_KEY_ID": endpoint["access_key"],
        "RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY": endpoint["secret_key"],
        "RCLONE_CONFIG_RGW_REGION": endpoint["region"],
        "RCLONE_CONFIG_RGW_FORCE_PATH_STYLE": "true",
    }


def load_raw_client(endpoint: dict[str, str]) -> dict[str, Any]:
    os.environ.update(
        S3_ENDPOINT=endpoint["endpoint_url"],
        AWS_ACCESS_KEY_ID=endpoint["access_key"],
        AWS_SECRET_ACCESS_KEY=endpoint["secret_key"],
    )
    argv, sys.argv = sys.argv, [str(RAW_CLIENT), "--procs", "2", "--conns", "32"]
    try:
        return runpy.run_path(str(RAW_CLIENT), run_name="s3_bench_raw")
    finally:
        sys.argv = argv


# --- runs -----------------------------------------------------------------------------------


def row(
    name: str,
    objects: int,
    r: dict[str, Any],
    wall: float | None = None,
    cpu: float | None = None,
) -> str:
    wall = wall if wall is not None else r["wall_s"]
    cpu = cpu if cpu is not None else r["cpu_s"]
    return (
        f"| {name} | {objects:,} | {wall:.2f} | {objects / wall:,.0f} | "
        f"{1000 * cpu / objects:.3f} | {r['peak_rss_mib']:.0f} |"
    )


HEADER = (
    "| contender | objects | wall s | objects/s | CPU s per 1,000 | peak RSS MiB |\n"
    "|---|---:|---:|---:|---:|---:|"
)


def rows(
    count: int, ours: dict[str, Any], result: dict[str, Any], theirs: str, rclone: dict[str, Any]
) -> list[str]:
    """The table's rows: our job alone, our whole process, rclone."""
    return [
        HEADER,
        row(
            f"objectjobs METRIC_RECONCILIATION (job, {result['processes']} worker processes)",
            count,
            ours,
            result["job_s"],
            result["job_cpu_s"],
        ),
        row("objectjobs (whole process incl. start-up)", count, ours),
        row(theirs, count, rclone),
    ]


def bench_local(count: int) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix="oj-bench-local-"))
    try:
        make_local(root, "bench", count)
        me = [sys.executable, __file__, "--child", "local", "--bucket", "bench"]
        # what the fill left dirty is written back first (untimed), as bench/replicate.py
        # does: otherwise the first contender lists beside the kernel's write-back
        os.sync()
        ours = run_child([*me, "--root", str(root)])
        result = json.loads(ours["stdout"].strip().splitlines()[-1])
        assert result["processed"] == count, result
        os.sync()
        rclone = run_child(["rclone", "size", "--json", str(root / "bench")])
        assert json.loads(rclone["stdout"])["count"] == count
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        f"### {count:,} local files (embedded default: local driver, SQLite)",
        "",
        *rows(count, ours, result, "rclone size", rclone),
        "",
    ]


def bench_rgw(count: int) -> list[str]:
    from tests.servers import start_rgw_server

    server = start_rgw_server()
    try:
        assert server.endpoint is not None
        endpoint = {
            "endpoint_url": server.endpoint.endpoint_url,
            "access_key": server.endpoint.access_key,
            "secret_key": server.endpoint.secret_key,
            "region": server.endpoint.region,
        }
        raw = load_raw_client(endpoint)
        bucket = "metrics-bench"
        status, body = asyncio.run(raw["simple"]("PUT", "/" + bucket))
        assert status == 200, body
        keys = [f"obj/{i:06d}" for i in range(count)]
        raw["parallel"]("put", bucket, keys, os.urandom(1024))
        listed, seconds = asyncio.run(raw["list_all"](bucket))
        assert listed == count
        me = [sys.executable, __file__, "--child", "s3", "--bucket", bucket,
              "--endpoint", json.dumps(endpoint)]  # fmt: skip
        ours = run_child(me)
        result = json.loads(ours["stdout"].strip().splitlines()[-1])
        assert result["processed"] == count, result
        rclone = run_child(
            ["rclone", "size", "--json", "--fast-list", f"rgw:{bucket}"], env=rclone_env(endpoint)
        )
        assert json.loads(rclone["stdout"])["count"] == count
    finally:
        server.stop()
    return [
        f"### {count:,} objects of 1 KiB on Ceph RGW (S3 driver)",
        "",
        *rows(count, ours, result, "rclone size --fast-list", rclone),
        "",
        f"Raw listing ceiling (s3_bench_raw.py's client, ListObjectsV2, one connection): "
        f"{listed / seconds:,.0f} keys/s ({seconds:.2f} s). Our job lists with versions "
        f"(ListObjectVersions).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local-files", type=int, default=200_000)
    parser.add_argument("--rgw-objects", type=int, default=50_000)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-rgw", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "metrics.md"))
    parser.add_argument("--child", choices=["local", "s3"], help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(job_child(args.child, args.bucket, args.root, json.loads(args.endpoint)))
        return
    lines = ["## METRIC_RECONCILIATION (bench/metrics.py)", ""]
    lines.append(f"Machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}.")
    lines.append("")
    if not args.skip_local:
        lines += bench_local(args.local_files)
    if not args.skip_rgw:
        lines += bench_rgw(args.rgw_objects)
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
