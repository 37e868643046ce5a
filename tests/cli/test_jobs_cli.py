"""``objectjobs login`` and ``objectjobs jobs …`` against the real server process."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from objectjobs.cli import app
from tests.cli.mapi import Mapi, token_error
from tests.cli.serving import SLOW, ServeProcess, clean_env

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), env=env, input=input)


@pytest.fixture
def admin_env(served: ServeProcess) -> dict[str, str]:
    return {
        "OBJECTJOBS_URL": served.url,
        "OBJECTJOBS_USER": "admin",
        "OBJECTJOBS_PASSWORD": served.admin_password,
    }


@pytest.fixture
def api(served: ServeProcess) -> Iterator[Mapi]:
    client = Mapi(served.url, "admin", served.admin_password)
    yield client
    client.close()


def one_line_error(result: Result) -> str:
    """The CLI's error contract: nothing on stdout, exactly one ``error: …`` line on stderr."""
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def api_message(api: Mapi, operation: str, body: dict[str, Any], status: int) -> str:
    response = api.post(operation, body)
    assert response.status_code == status, response.text
    message: str = response.json()["message"]
    return message


def create(env: dict[str, str], bucket: str, *params: str) -> int:
    args = ["jobs", "create", "METRIC_RECONCILIATION", bucket, "--quiet"]
    for p in params:
        args += ["--param", p]
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout.strip())


# --- success paths ----------------------------------------------------------------------------


def test_create_status_describe_cancel_human(
    admin_env: dict[str, str], slow_bucket: str, api: Mapi
) -> None:
    result = cli("jobs", "create", "metric_reconciliation", slow_bucket, "-p", SLOW, env=admin_env)
    assert result.exit_code == 0, result.stderr
    assert "METRIC_RECONCILIATION" in result.stdout
    assert slow_bucket in result.stdout
    assert SLOW in result.stdout
    job_id = api.ok("jobs/list", {"bucketName": slow_bucket})["jobs"][0]["jobId"]["id"]
    assert str(job_id) in result.stdout

    # the id may be negative: it is an argument, not an option
    status = cli("jobs", "status", str(job_id), env=admin_env)
    assert status.exit_code == 0, status.stderr
    assert str(job_id) in status.stdout
    assert slow_bucket in status.stdout
    assert any(state in status.stdout for state in ("EXAMINING", "PROCESSING", "EXECUTING"))

    described = cli("jobs", "describe", str(job_id), env=admin_env)
    assert described.exit_code == 0, described.stderr
    assert "admin (id " in described.stdout
    assert "progress" in described.stdout

    listed = cli("jobs", "list", "--bucket", slow_bucket, env=admin_env)
    assert listed.exit_code == 0, listed.stderr
    assert str(job_id) in listed.stdout
    assert listed.stdout.count(slow_bucket) == 1

    cancelled = cli("jobs", "cancel", str(job_id), env=admin_env)
    assert cancelled.exit_code == 0, cancelled.stderr
    assert "CANCELLED" in cancelled.stdout
    assert api.ok("jobs/status", {"jobId": {"id": job_id}})["status"]["jobState"] == "CANCELLED"


def test_cancel_of_a_complete_job_is_the_apis_400(
    admin_env: dict[str, str], bucket: str, api: Mapi
) -> None:
    job_id = create(admin_env, bucket)
    watched = cli("jobs", "watch", str(job_id), "--interval", "0.2", env=admin_env)
    assert watched.exit_code == 0, watched.output
    # the bucket fixture holds four objects
    assert watched.stdout.splitlines()[-1] == f"job {job_id} COMPLETE: processed 4, failed 0"
    result = cli("jobs", "cancel", str(job_id), env=admin_env)
    assert result.exit_code == 1
    assert one_line_error(result) == api_message(api, "jobs/cancel", {"jobId": {"id": job_id}}, 400)


def test_json_output_is_the_apis_json(
    admin_env: dict[str, str], slow_bucket: str, api: Mapi
) -> None:
    bucket = slow_bucket
    created = cli(
        "jobs",
        "create",
        "METRIC_RECONCILIATION",
        bucket,
        "--param",
        "fix=false",
        "--param",
        SLOW,
        "--json",
        env=admin_env,
    )
    assert created.exit_code == 0, created.stderr
    job = json.loads(created.stdout)["jobStatus"]
    job_id = job["jobId"]["id"]
    assert job["jobState"] == "EXAMINING"
    assert job["jobParams"] == {"fix": "false", "objectsPerSecond": "1"}
    assert set(job) == {
        "jobId",
        "jobState",
        "jobType",
        "startTime",
        "completeTime",
        "jobParams",
        "jobStats",
        "bucketName",
    }

    listed = json.loads(cli("jobs", "list", "--bucket", bucket, "--json", env=admin_env).stdout)
    direct = api.ok("jobs/list", {"bucketName": bucket})
    # the job runs meanwhile: its counters and state may move between the two calls
    moving = ("jobStats", "jobState", "completeTime")
    assert [{k: v for k, v in j.items() if k not in moving} for j in listed["jobs"]] == [
        {k: v for k, v in j.items() if k not in moving} for j in direct["jobs"]
    ]
    assert listed["pageToken"] == direct["pageToken"]

    status = json.loads(cli("jobs", "status", str(job_id), "--json", env=admin_env).stdout)
    assert status["status"]["jobId"]["id"] == job_id

    described = json.loads(cli("jobs", "describe", str(job_id), "--json", env=admin_env).stdout)
    assert described["job"]["jobId"]["id"] == job_id
    assert described["owner"]["name"] == "admin"
    assert {"progress", "plan", "totals", "failureReasons"} <= set(described)

    report = json.loads(cli("jobs", "report", str(job_id), "--json", env=admin_env).stdout)
    assert report == api.ok("jobs/report", {"jobId": {"id": job_id}})

    cancel = cli("jobs", "cancel", str(job_id), "--json", env=admin_env)
    assert cancel.exit_code == 0, cancel.stderr
    answer = json.loads(cancel.stdout)
    assert answer["status"]["jobState"] == "CANCELLED"
    assert answer == api.ok("jobs/status", {"jobId": {"id": job_id}})


def test_list_paging(admin_env: dict[str, str], bucket: str, tmp_path: Path) -> None:
    # one active metric job per bucket and prefix: vary the prefix
    ids = {create(admin_env, bucket, f"prefix=p{i}/") for i in range(3)}

    first = cli("jobs", "list", "--bucket", bucket, "--page-size", "1", "--json", env=admin_env)
    page = json.loads(first.stdout)
    assert len(page["jobs"]) == 1
    assert page["pageToken"]

    human = cli("jobs", "list", "--bucket", bucket, "--page-size", "1", env=admin_env)
    assert human.exit_code == 0
    assert "more jobs" in human.stderr

    every = cli(
        "jobs", "list", "--bucket", bucket, "--page-size", "1", "--all", "--json", env=admin_env
    )
    assert every.exit_code == 0, every.stderr
    answer = json.loads(every.stdout)
    assert {j["jobId"]["id"] for j in answer["jobs"]} == ids
    assert answer["pageToken"] is None


def test_report_csv(admin_env: dict[str, str], bucket: str, tmp_path: Path, api: Mapi) -> None:
    job_id = create(admin_env, bucket)
    target = tmp_path / "report.csv"
    result = cli(
        "jobs", "report", str(job_id), "--csv", str(target), "--outcome", "failed", env=admin_env
    )
    assert result.exit_code == 0, result.stderr
    with target.open(newline="") as f:
        rows = list(csv.DictReader(f))
    expected = api.ok("jobs/report", {"jobId": {"id": job_id}, "outcome": "FAILED"})["results"]
    assert [r["key"] for r in rows] == [r["key"] for r in expected]
    assert target.read_text().splitlines()[0] == "key,versionId,action,outcome,errorCode,message"


def test_login_saves_refresh_token_not_password(served: ServeProcess, tmp_path: Path) -> None:
    result = cli(
        "login",
        "--url",
        served.url,
        "--user",
        "admin",
        "--password-stdin",
        input=served.admin_password + "\n",
    )
    assert result.exit_code == 0, result.stderr
    saved = tmp_path / "config" / "objectjobs" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    text = saved.read_text()
    assert served.admin_password not in text
    assert json.loads(text)[served.url]["user"] == "admin"

    # no password in the environment: the saved login is enough
    listed = cli("jobs", "list", "--json", env={"OBJECTJOBS_URL": served.url})
    assert listed.exit_code == 0, listed.stderr
    assert "jobs" in json.loads(listed.stdout)

    out = cli("logout", "--url", served.url)
    assert out.exit_code == 0
    assert served.url not in json.loads(saved.read_text())
    after = cli("jobs", "list", env={"OBJECTJOBS_URL": served.url})
    assert "no credentials" in one_line_error(after)


# --- watch ------------------------------------------------------------------------------------


def test_watch_follows_job_until_cancelled(
    served: ServeProcess, admin_env: dict[str, str], slow_bucket: str, api: Mapi
) -> None:
    job_id = create(admin_env, slow_bucket, SLOW)
    command = ["jobs", "watch", str(job_id), "--interval", "0.2", "--json"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "objectjobs", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(**admin_env),
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # following the job: cancel it under its eyes
        api.ok("jobs/cancel", {"jobId": {"id": job_id}})
        out, err = watch.communicate(timeout=60)
        out = first + out
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    snapshots = [json.loads(line) for line in out.splitlines()]
    assert len(snapshots) >= 2  # one line per change while it ran
    assert all(s["job"]["jobId"]["id"] == job_id for s in snapshots)
    assert snapshots[0]["job"]["jobState"] != "CANCELLED"
    last = snapshots[-1]["job"]
    assert last["jobState"] == "CANCELLED"
    assert watch.returncode == 1
    stats = last["jobStats"]
    assert err.splitlines() == [
        f"error: job {job_id} CANCELLED: processed {stats['processed']}, failed {stats['failed']}"
    ]


def test_watch_human_on_cancelled_job(
    admin_env: dict[str, str], slow_bucket: str, api: Mapi
) -> None:
    job_id = create(admin_env, slow_bucket, SLOW)
    api.ok("jobs/cancel", {"jobId": {"id": job_id}})
    result = cli("jobs", "watch", str(job_id), env=admin_env)
    assert f"job {job_id}: CANCELLED" in result.stdout
    assert result.exit_code == 1
    assert one_line_error_anywhere(result).startswith(f"job {job_id} CANCELLED")


def one_line_error_anywhere(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix("error: ")


# --- errors -----------------------------------------------------------------------------------


def test_bad_param_syntax(admin_env: dict[str, str], bucket: str) -> None:
    result = cli(
        "jobs", "create", "METRIC_RECONCILIATION", bucket, "--param", "dryRun", env=admin_env
    )
    assert result.exit_code == 2
    assert one_line_error(result) == "bad --param 'dryRun': expected KEY=VALUE"


def test_unknown_type_and_param_carry_the_apis_message(
    admin_env: dict[str, str], bucket: str, api: Mapi
) -> None:
    result = cli("jobs", "create", "SHRED_EVERYTHING", bucket, env=admin_env)
    assert result.exit_code == 1
    expected = api_message(
        api, "jobs/create", {"jobType": "SHRED_EVERYTHING", "bucketName": bucket}, 400
    )
    assert one_line_error(result) == " ".join(expected.split())

    result = cli(
        "jobs", "create", "METRIC_RECONCILIATION", bucket, "-p", "colour=blue", env=admin_env
    )
    expected = api_message(
        api,
        "jobs/create",
        {"jobType": "METRIC_RECONCILIATION", "bucketName": bucket, "jobParams": {"colour": "blue"}},
        400,
    )
    assert one_line_error(result) == " ".join(expected.split())


def test_unknown_bucket(admin_env: dict[str, str], api: Mapi) -> None:
    result = cli("jobs", "create", "METRIC_RECONCILIATION", "no-such-bucket", env=admin_env)
    assert result.exit_code == 1
    expected = api_message(
        api,
        "jobs/create",
        {"jobType": "METRIC_RECONCILIATION", "bucketName": "no-such-bucket"},
        404,
    )
    assert one_line_error(result) == expected


@pytest.mark.parametrize("command", ["status", "cancel", "describe", "report", "watch"])
def test_unknown_job(command: str, admin_env: dict[str, str], api: Mapi) -> None:
    missing = -7  # negative, as real ids can be
    while api.post("jobs/status", {"jobId": {"id": missing}}).status_code != 404:
        missing -= 1
    result = cli("jobs", command, str(missing), env=admin_env)
    assert result.exit_code == 1
    operation = "jobs/describe" if command == "watch" else f"jobs/{command}"
    assert one_line_error(result) == api_message(api, operation, {"jobId": {"id": missing}}, 404)


def test_bad_credentials(served: ServeProcess) -> None:
    env = {
        "OBJECTJOBS_URL": served.url,
        "OBJECTJOBS_USER": "admin",
        "OBJECTJOBS_PASSWORD": "wrong-" + served.admin_password,
    }
    result = cli("jobs", "list", env=env)
    assert result.exit_code == 1
    status, body = token_error(served.url, "admin", env["OBJECTJOBS_PASSWORD"])
    assert status == 401
    assert one_line_error(result) == body["error_description"]
    # the password is never echoed
    assert env["OBJECTJOBS_PASSWORD"] not in result.output


def test_login_with_bad_password(served: ServeProcess, tmp_path: Path) -> None:
    result = cli(
        "login", "--url", served.url, "--user", "admin", "--password-stdin", input="nope\n"
    )
    assert result.exit_code == 1
    one_line_error(result)
    assert not (tmp_path / "config" / "objectjobs" / "credentials.json").exists()


def test_connection_refused() -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    env = {"OBJECTJOBS_URL": url, "OBJECTJOBS_USER": "a", "OBJECTJOBS_PASSWORD": "b"}
    message = one_line_error(cli("jobs", "list", env=env))
    assert message.startswith(f"cannot reach {url}")


def test_viewer_cannot_create(served: ServeProcess, bucket: str) -> None:
    name = f"viewer-{os.getpid()}-{time.monotonic_ns()}"
    added = cli(
        "user",
        "add",
        name,
        "--role",
        "viewer",
        "--password-stdin",
        "--data-dir",
        str(served.data_dir),
        input="view-pass-1\n",
    )
    assert added.exit_code == 0, added.stderr
    env = {
        "OBJECTJOBS_URL": served.url,
        "OBJECTJOBS_USER": name,
        "OBJECTJOBS_PASSWORD": "view-pass-1",
    }
    assert cli("jobs", "list", env=env).exit_code == 0
    viewer = Mapi(served.url, name, "view-pass-1")
    try:
        expected = api_message(
            viewer, "jobs/create", {"jobType": "METRIC_RECONCILIATION", "bucketName": bucket}, 403
        )
    finally:
        viewer.close()
    result = cli("jobs", "create", "METRIC_RECONCILIATION", bucket, env=env)
    assert one_line_error(result) == expected
