"""``objectjobs worker``: a worker alone, as a real process, sharing the job store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from objectjobs.auth import hash_password
from objectjobs.cli import app
from objectjobs.models import JobRecord, JobState, JobType, NewJob
from objectjobs.settings import load_settings
from objectjobs.store.interface import JobStore
from objectjobs.wakeups import NodeWakeups
from objectjobs.wiring import open_store
from tests.cli.serving import ServeProcess, clean_env, terminate


def start_worker(data_dir: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "objectjobs", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            env=clean_env(OBJECTJOBS_DATA_DIR=str(data_dir), **env),
        )


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    if not terminate(proc, 20):
        pytest.fail("the worker did not stop on SIGTERM")
    return proc.returncode


def fill_bucket(data_dir: Path, name: str, count: int) -> None:
    """A bucket of ``count`` files (of 0, 1, 2, ... bytes) under the data directory."""
    bucket = data_dir / "buckets" / name
    bucket.mkdir(parents=True)
    for i in range(count):
        (bucket / f"obj-{i}").write_bytes(b"x" * i)


async def job_ended(
    store: JobStore, job: JobRecord, proc: subprocess.Popen[bytes], log: Path, within: float
) -> JobRecord:
    """The job's record once it is no longer active, or after ``within`` seconds; the
    worker process must stay up meanwhile."""
    deadline = time.monotonic() + within
    record = job
    while record.state.active and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()  # noqa: ASYNC240 - shown on failure only
        await asyncio.sleep(0.1)
        found = await store.get_job(job.id)
        assert found is not None
        record = found
    return record


async def test_worker_alone_runs_a_job_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    fill_bucket(data_dir, "alone", 7)
    settings = load_settings(None, data_dir=data_dir)
    store = await open_store(settings)
    try:
        owner = await store.create_user("owner", "operator", hash_password("pw-owner"))
        job, created = await store.create_job(
            NewJob(JobType.METRIC_RECONCILIATION, "alone", {}, owner.id)
        )
        assert created
        log = tmp_path / "worker.log"
        proc = start_worker(data_dir, log)
        try:
            record = await job_ended(store, job, proc, log, within=60)
        finally:
            code = stop_worker(proc)
        assert record.state is JobState.COMPLETE, log.read_text()
        assert record.processed == 7
        assert code == 0, log.read_text()
        text = log.read_text()
        assert "worker stopped" in text
        assert "Traceback" not in text
    finally:
        await store.close()


def wait_started(proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while "worker started" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.fixture
def worker_on_served(served: ServeProcess, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A second worker next to serve's embedded one, on the same SQLite job store."""
    log = tmp_path / "worker.log"
    proc = start_worker(served.data_dir, log)
    wait_started(proc, log)
    yield proc
    assert stop_worker(proc) == 0, log.read_text()


def test_watch_until_complete(
    served: ServeProcess, bucket: str, worker_on_served: subprocess.Popen[bytes]
) -> None:
    env = {
        "OBJECTJOBS_URL": served.url,
        "OBJECTJOBS_USER": "admin",
        "OBJECTJOBS_PASSWORD": served.admin_password,
    }
    runner = CliRunner()
    created = runner.invoke(app, ["jobs", "create", "METRIC_RECONCILIATION", bucket, "-q"], env=env)
    assert created.exit_code == 0, created.stderr
    job_id = created.stdout.strip()
    watched = runner.invoke(app, ["jobs", "watch", job_id, "--interval", "0.2"], env=env)
    assert watched.exit_code == 0, watched.output
    # the bucket fixture holds four objects
    assert watched.stdout.splitlines()[-1] == f"job {job_id} COMPLETE: processed 4, failed 0"
    assert "4/4" in watched.stdout


async def test_a_sleeping_worker_process_is_woken_by_a_job_created_on_its_node(
    tmp_path: Path,
) -> None:
    """The worker polls every 60 s here: the job is done long before its next poll only
    because creating it woke the worker (as the API does, ``NodeWakeups.notify``)."""
    data_dir = tmp_path / "data"
    fill_bucket(data_dir, "woken", 5)
    settings = load_settings(None, data_dir=data_dir)
    store = await open_store(settings)
    log = tmp_path / "worker.log"
    proc = start_worker(
        data_dir, log, OBJECTJOBS_WORKER__POLL_S="60", OBJECTJOBS_WORKER__PROCESSES="1"
    )
    try:
        wait_started(proc, log)
        deadline = time.monotonic() + 30
        while not list((data_dir / "wake").glob("*.sock")):  # listening
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)  # its first claim found nothing: asleep for 60 s now
        owner = await store.create_user("owner", "operator", hash_password("pw-owner"))
        job, _ = await store.create_job(
            NewJob(JobType.METRIC_RECONCILIATION, "woken", {}, owner.id)
        )
        NodeWakeups(data_dir / "wake").notify()
        record = await job_ended(store, job, proc, log, within=20)
        assert record.state is JobState.COMPLETE, log.read_text()
        assert record.processed == 5
    finally:
        assert stop_worker(proc) == 0, log.read_text()
        await store.close()
    assert not list((data_dir / "wake").glob("*.sock"))  # removed as it stopped
