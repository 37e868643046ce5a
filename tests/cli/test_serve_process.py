"""The real ``objectjobs serve`` process, spoken to over a socket like any MAPI client."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.cli.mapi import Mapi
from tests.cli.serving import ServeProcess, clean_env, start_serve


def _make_bucket(data_dir: Path) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    (data_dir / "buckets" / name).mkdir(parents=True)
    for i in range(30):
        (data_dir / "buckets" / name / f"key-{i}.txt").write_text("hello\n")
    return name


def _round_trip(api: Mapi, bucket: str) -> None:
    # one object a second: the job is still running when we cancel it
    params = {"dryRun": "true", "objectsPerSecond": "1"}
    created = api.ok(
        "jobs/create",
        {"jobType": "METRIC_RECONCILIATION", "bucketName": bucket, "jobParams": params},
    )["jobStatus"]
    assert created["jobState"] == "EXAMINING"
    assert created["bucketName"] == bucket
    assert created["jobParams"] == params
    assert created["completeTime"] is None
    job_id = created["jobId"]["id"]

    listed = api.ok("jobs/list", {"bucketName": bucket})
    assert [j["jobId"]["id"] for j in listed["jobs"]] == [job_id]
    assert listed["pageToken"] is None

    status = api.ok("jobs/status", {"jobId": {"id": job_id}})["status"]
    assert status["jobId"]["id"] == job_id
    assert status["jobState"] in ("EXAMINING", "PROCESSING", "EXECUTING")

    cancelled = api.ok("jobs/cancel", {"jobId": {"id": job_id}})["status"]
    assert cancelled["jobState"] == "CANCELLED"
    assert cancelled["completeTime"] is not None
    again = api.ok("jobs/status", {"jobId": {"id": job_id}})["status"]
    assert again["jobState"] == "CANCELLED"


def test_serve_prints_banner_and_admin_password(served: ServeProcess) -> None:
    out = served.stdout
    assert f"objectjobs listening on http://127.0.0.1:{served.port}/" in out
    assert f"http://127.0.0.1:{served.port}/console/" in out
    assert f"http://127.0.0.1:{served.port}/docs" in out
    assert "admin user: admin" in out
    assert served.admin_password
    # a secret never reaches the log
    assert served.admin_password not in served.stderr
    # the embedded defaults: SQLite database and bucket root in the data directory
    assert (served.data_dir / "objectjobs.db").is_file()
    assert (served.data_dir / "buckets").is_dir()


def test_http_round_trip(served: ServeProcess) -> None:
    api = Mapi(served.url, "admin", served.admin_password)
    try:
        _round_trip(api, _make_bucket(served.data_dir))
    finally:
        api.close()


def test_wrong_password_is_refused(served: ServeProcess) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        Mapi(served.url, "admin", served.admin_password + "x")
    assert caught.value.response.status_code == 401


def test_port_in_use_is_one_line_error(served: ServeProcess, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "objectjobs",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(served.port),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{served.port}: Address already in use"
    ]
    assert "Traceback" not in done.stdout + done.stderr


def test_bad_config_value_is_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[server]\nport = "eighty"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "objectjobs",
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid settings: server.port:")
    assert not (tmp_path / "d").exists()  # refused before touching anything


@pytest.fixture(scope="module")
def served_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("serve-tls")
    config = workdir / "objectjobs.toml"
    config.write_text("[server]\ntls_self_signed = true\n")
    server = start_serve(workdir, "--config", str(config), scheme="https")
    try:
        yield server
    finally:
        server.stop()


def test_https_with_self_signed_certificate(served_tls: ServeProcess) -> None:
    cert_path = served_tls.data_dir / "tls" / "cert.pem"
    key_path = served_tls.data_dir / "tls" / "key.pem"
    assert cert_path.is_file()
    assert key_path.stat().st_mode & 0o077 == 0
    assert f"objectjobs listening on https://127.0.0.1:{served_tls.port}/" in served_tls.stdout

    # the certificate served on the socket is the one stored in the data directory
    served_pem = ssl.get_server_certificate(("127.0.0.1", served_tls.port))
    served_cert = x509.load_pem_x509_certificate(served_pem.encode())
    stored_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert served_cert.public_bytes(serialization.Encoding.DER) == stored_cert.public_bytes(
        serialization.Encoding.DER
    )

    # trusting exactly that certificate verifies the connection to 127.0.0.1 (SAN present)
    trust = ssl.create_default_context(cafile=str(cert_path))
    assert httpx.get(f"{served_tls.url}/healthz", verify=trust).status_code == 200
    # and an ordinary client refuses it
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{served_tls.url}/healthz")

    api = Mapi(served_tls.url, "admin", served_tls.admin_password, verify=False)
    try:
        _round_trip(api, _make_bucket(served_tls.data_dir))
    finally:
        api.close()


def test_cli_over_https_needs_insecure_or_trust(served_tls: ServeProcess) -> None:
    from typer.testing import CliRunner

    from objectjobs.cli import app

    env = {
        "OBJECTJOBS_URL": served_tls.url,
        "OBJECTJOBS_USER": "admin",
        "OBJECTJOBS_PASSWORD": served_tls.admin_password,
    }
    runner = CliRunner()
    refused = runner.invoke(app, ["jobs", "list"], env=env)
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"error: cannot verify the TLS certificate of {served_tls.url} "
        "(use --insecure for a self-signed one)"
    ]
    accepted = runner.invoke(app, ["jobs", "list", "--insecure", "--json"], env=env)
    assert accepted.exit_code == 0, accepted.stderr
    assert "jobs" in json.loads(accepted.stdout)
