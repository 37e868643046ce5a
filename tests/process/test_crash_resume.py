"""kill -9 of ``objectjobs serve`` in the middle of a job; after a restart it completes
exactly (SPEC §3.7)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.serving import clean_env, run_serve
from tests.servers import free_port

from .support import connect_when_ready, create_metric_job, ended, poll_status, write_files

OBJECTS = 20_000
PASSWORD = "crash-test-password"


@pytest.mark.slow
def test_kill_9_mid_job_then_restart_completes_exactly(tmp_path: Path) -> None:
    env = {
        "OBJECTJOBS_AUTH__ADMIN_PASSWORD": PASSWORD,
        "OBJECTJOBS_WORKER__LEASE_S": "3",
        "OBJECTJOBS_WORKER__HEARTBEAT_S": "1",
        "OBJECTJOBS_WORKER__PARTITION_OBJECTS": "1500",
    }
    data_dir, port = tmp_path / "data", free_port()
    args = ("--data-dir", str(data_dir), "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    first = run_serve(tmp_path, *args, env=clean_env(**env))
    try:
        mapi = connect_when_ready(url, first, PASSWORD)
        total_bytes = write_files(data_dir / "buckets" / "crash", OBJECTS)
        job_id = create_metric_job(mapi, "crash", "4000")
        mid = poll_status(mapi, job_id, lambda j: j["jobStats"]["processed"] >= 3000 or ended(j))
        assert not ended(mid), f"job ended before the crash: {mid}"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert mid["jobStats"]["processed"] < OBJECTS
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)

    # restart on the same data directory: the dead worker's leases expire and are taken over
    proc = run_serve(tmp_path, *args, env=clean_env(**env))
    try:
        mapi = connect_when_ready(url, proc, PASSWORD)
        final = poll_status(mapi, job_id, ended, timeout=180)
        assert final["jobState"] == "COMPLETE", final
        assert final["jobStats"] == {"processed": OBJECTS, "failed": 0}
        usage = mapi.ok("bucket/usage", {"bucketName": "crash"})
        assert usage["jobId"]["id"] == job_id
        assert usage["usage"]["currentObjects"] == OBJECTS
        assert usage["usage"]["currentBytes"] == total_bytes
        described = mapi.ok("jobs/describe", {"jobId": {"id": job_id}})
        assert described["totals"] == {"objects": OBJECTS, "bytes": total_bytes}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
