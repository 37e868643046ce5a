"""Many nodes on one PostgreSQL (SPEC §4): one API process and three ``objectjobs worker``
processes share a job's partitions, survive a kill -9 of one of them, and all stop on
cancel."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.serving import clean_env, run_serve

from .support import (
    connect_when_ready,
    create_metric_job,
    ended,
    poll_status,
    start_worker,
    write_files,
)

OBJECTS = 20_000
PASSWORD = "many-nodes-password"


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_share_survive_a_kill_and_all_stop_on_cancel(
    tmp_path: Path, postgres_server: Any
) -> None:
    from tests.servers import free_port

    data_dir = tmp_path / "data"
    bucket_root = tmp_path / "buckets"
    total_bytes = write_files(bucket_root / "shared", OBJECTS)
    write_files(bucket_root / "second", 6000)
    port = free_port()
    env = {
        "OBJECTJOBS_DATA_DIR": str(data_dir),
        "OBJECTJOBS_DATABASE__URL": postgres_server.create_database(),
        "OBJECTJOBS_STORAGE__ROOT": str(bucket_root),
        "OBJECTJOBS_AUTH__ADMIN_PASSWORD": PASSWORD,
        "OBJECTJOBS_WORKER__LEASE_S": "3",
        "OBJECTJOBS_WORKER__HEARTBEAT_S": "1",
        "OBJECTJOBS_WORKER__PARTITION_OBJECTS": "1000",
        "OBJECTJOBS_WORKER__CONCURRENCY": "8",
        # three workers of one process each: the nodes this test is about
        "OBJECTJOBS_WORKER__PROCESSES": "1",
    }
    api = run_serve(
        tmp_path, "--port", str(port), env=clean_env(OBJECTJOBS_WORKER__ENABLED="false", **env)
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        mapi = connect_when_ready(f"http://127.0.0.1:{port}", api, PASSWORD)
        workers = [start_worker(tmp_path, f"worker{i}", env) for i in range(3)]

        job_id = create_metric_job(mapi, "shared", "6000")
        poll_status(mapi, job_id, lambda j: j["jobStats"]["processed"] >= 4000 or ended(j))
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        final = poll_status(mapi, job_id, ended, timeout=180)
        assert final["jobState"] == "COMPLETE", final
        assert final["jobStats"] == {"processed": OBJECTS, "failed": 0}
        usage = mapi.ok("bucket/usage", {"bucketName": "shared"})["usage"]
        assert (usage["currentObjects"], usage["currentBytes"]) == (OBJECTS, total_bytes)
        logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(3)]
        # more than one worker process worked this job's partitions
        assert sum(f"of job {job_id}" in log or str(job_id) in log for log in logs) >= 2, logs

        # cancel reaches every worker still running a partition of the job
        workers[0] = start_worker(tmp_path, "worker3", env)
        second = create_metric_job(mapi, "second", "1500")
        poll_status(mapi, second, lambda j: j["jobStats"]["processed"] >= 1500 or ended(j))
        cancelled = mapi.ok("jobs/cancel", {"jobId": {"id": second}})["status"]
        assert cancelled["jobState"] == "CANCELLED"
        time.sleep(1.5)
        frozen = mapi.ok("jobs/status", {"jobId": {"id": second}})["status"]
        time.sleep(1.5)
        later = mapi.ok("jobs/status", {"jobId": {"id": second}})["status"]
        assert later["jobStats"] == frozen["jobStats"]
        assert later["jobStats"]["processed"] < 6000
        # every task of the job a worker was still running when the cancel came was stopped
        stopped_any = False
        for name in ["worker3", "worker1", "worker2"]:
            log = (tmp_path / f"{name}.log").read_text()
            started, finished, stopped = (
                set(re.findall(rf"{what} task (\d+)[^\n]* of job {second}\b", log))
                # a cancelled task stops at its next cancel poll or, if it checkpoints
                # first, on the refused checkpoint ("lost the lease"): both within ~1 s
                for what in ("working on", "finished", "(?:stopped|lost the lease of)")
            )
            assert started - finished <= stopped, (name, started, finished, stopped)
            stopped_any = stopped_any or bool(stopped)
        assert stopped_any  # the cancel came while partitions were running
    finally:
        for proc in [*workers, api]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*workers, api]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
