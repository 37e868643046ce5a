"""Helpers of the multi-process tests: data sets, worker processes, polling a job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.cli.mapi import Mapi
from tests.cli.serving import clean_env


def write_files(bucket_dir: Path, count: int) -> int:
    """``count`` small files spread over 50 directories; returns their total size."""
    total = 0
    for i in range(count):
        path = bucket_dir / f"p{i % 50:02d}" / f"object-{i:06d}"
        if i < 50:
            path.parent.mkdir(parents=True, exist_ok=True)
        body = b"o" * (i % 97)
        path.write_bytes(body)
        total += len(body)
    return total


def start_worker(workdir: Path, name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = (workdir / f"{name}.log").open("ab")
    with out:
        return subprocess.Popen(
            [sys.executable, "-m", "objectjobs", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(**env),
            cwd=workdir,
        )


def poll_status(mapi: Mapi, job_id: int, until: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = mapi.ok("jobs/status", {"jobId": {"id": job_id}})["status"]
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not get there in {timeout}s: {job}")
        time.sleep(0.05)


def create_metric_job(mapi: Mapi, bucket: str, objects_per_second: str) -> int:
    """A METRIC_RECONCILIATION job, paced so that it is still running when looked at."""
    created = mapi.ok(
        "jobs/create",
        {
            "jobType": "METRIC_RECONCILIATION",
            "bucketName": bucket,
            "jobParams": {"objectsPerSecond": objects_per_second},
        },
    )["jobStatus"]
    return int(created["jobId"]["id"])


def ended(job: dict[str, Any]) -> bool:
    return job["jobState"] in ("COMPLETE", "FAILED", "CANCELLED")


def connect_when_ready(url: str, proc: subprocess.Popen[bytes], password: str) -> Mapi:
    """Wait for /healthz of a server process we started, then sign in as admin."""
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"the server process exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Mapi(url, "admin", password)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not become healthy")
        time.sleep(0.2)
