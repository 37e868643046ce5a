"""``worker.processes``: ``objectjobs serve`` runs worker processes beside its own worker;
they share a job's partitions, and end with the server however it ends (SPEC §4)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.mapi import Mapi
from tests.cli.serving import clean_env, run_serve, terminate
from tests.servers import free_port

from .support import connect_when_ready, create_metric_job, ended, poll_status, write_files

PASSWORD = "worker-processes-password"
OBJECTS = 3000


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead: it waits only for its parent to collect it
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


@contextlib.contextmanager
def _serving(
    tmp_path: Path, processes: int
) -> Iterator[tuple[subprocess.Popen[bytes], Mapi, Path]]:
    """``objectjobs serve`` with ``processes`` worker processes, all of them started; stopped
    with SIGTERM at the end unless the test ended it."""
    data_dir, port = tmp_path / "data", free_port()
    env = clean_env(
        OBJECTJOBS_AUTH__ADMIN_PASSWORD=PASSWORD,
        OBJECTJOBS_WORKER__PROCESSES=str(processes),
        OBJECTJOBS_WORKER__PARTITION_OBJECTS="100",
        OBJECTJOBS_WORKER__LEASE_S="3",
        OBJECTJOBS_WORKER__HEARTBEAT_S="1",
    )
    serve = run_serve(tmp_path, "--data-dir", str(data_dir), "--port", str(port), env=env)
    try:
        mapi = connect_when_ready(f"http://127.0.0.1:{port}", serve, PASSWORD)
        log = tmp_path / "serve.stderr"
        _wait_for(lambda: len(_workers_started(log)) == processes, f"{processes} worker(s)")
        yield serve, mapi, data_dir
    finally:
        terminate(serve, 30)


def _stopped_cleanly(serve: subprocess.Popen[bytes]) -> bool:
    serve.send_signal(signal.SIGTERM)
    # uvicorn ends by re-raising the signal it handled, once shut down cleanly
    return serve.wait(30) in (0, -signal.SIGTERM)


def _workers_started(log: Path) -> set[str]:
    return set(re.findall(r"worker (\S+:\d+:\w+) started", log.read_text(errors="replace")))


@pytest.mark.slow
def test_serve_with_two_processes_shares_one_job_between_them(tmp_path: Path) -> None:
    with _serving(tmp_path, processes=2) as (serve, mapi, data_dir):
        [child] = _children(serve.pid)
        total = write_files(data_dir / "buckets" / "shared", OBJECTS)
        # paced, so the partitions are not all done before the second worker looks
        job_id = create_metric_job(mapi, "shared", "1000")
        final = poll_status(mapi, job_id, ended, timeout=120)
        assert final["jobState"] == "COMPLETE", final
        assert final["jobStats"] == {"processed": OBJECTS, "failed": 0}
        usage = mapi.ok("bucket/usage", {"bucketName": "shared"})["usage"]
        assert (usage["currentObjects"], usage["currentBytes"]) == (OBJECTS, total)
        with sqlite3.connect(data_dir / "objectjobs.db") as db:
            owners = {
                int(owner.split(":")[1])
                for (owner,) in db.execute(
                    "SELECT lease_owner FROM tasks WHERE job_id = ? AND phase = 'PROCESS'",
                    (job_id,),
                )
            }
        assert owners == {serve.pid, child}, owners
        assert _stopped_cleanly(serve)
    # the serving process stopped its worker process before it exited
    assert not _alive(child)


@pytest.mark.slow
def test_a_worker_process_ends_when_serve_is_killed(tmp_path: Path) -> None:
    with _serving(tmp_path, processes=2) as (serve, _, _):
        [child] = _children(serve.pid)
        serve.send_signal(signal.SIGKILL)
        serve.wait(10)
        # orphaned, it reads the end of its input and stops as a stopped worker does
        _wait_for(lambda: not _alive(child), "the orphaned worker process to end", 15)
        assert "worker stopped" in (tmp_path / "serve.stderr").read_text()


@pytest.mark.slow
def test_one_process_starts_no_worker_process(tmp_path: Path) -> None:
    with _serving(tmp_path, processes=1) as (serve, _, _):
        time.sleep(1)
        assert _children(serve.pid) == set()
        assert _stopped_cleanly(serve)
