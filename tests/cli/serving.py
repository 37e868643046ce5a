"""The real ``objectjobs serve`` process, as an operator starts it, for the CLI tests."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port

START_TIMEOUT = 90.0
PASSWORD_LINE = re.compile(r"^admin password \(shown once\): (\S+)$", re.MULTILINE)
LISTEN_LINE = re.compile(r"^objectjobs listening on (\S+)$", re.MULTILINE)
# the rate limit that keeps a job on the 30-object ``slow_bucket`` running for half a minute
SLOW = "objectsPerSecond=1"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any OBJECTJOBS_* setting that could leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBJECTJOBS_")}
    env.update(extra)
    return env


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    stdout_path: Path
    stderr_path: Path
    url: str = ""
    admin_password: str = ""

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> int:
        terminate(self.proc, 15)
        return self.proc.returncode


def terminate(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGTERM, then a kill after ``grace`` seconds; whether it stopped without the kill."""
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return False


def run_serve(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    out = (workdir / "serve.stdout").open("ab")
    err = (workdir / "serve.stderr").open("ab")
    with out, err:
        return subprocess.Popen(
            [sys.executable, "-m", "objectjobs", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env or clean_env(),
            cwd=workdir,
        )


def start_serve(
    workdir: Path, *extra: str, scheme: str = "http", env: dict[str, str] | None = None
) -> ServeProcess:
    """Start ``objectjobs serve --data-dir <workdir>/data --port <free>`` and wait until it
    answers /healthz and has printed its banner. ``env`` adds to the clean environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    port = free_port()
    proc = run_serve(
        workdir,
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        *extra,
        env=clean_env(**(env or {})),
    )
    server = ServeProcess(proc, data_dir, port, workdir / "serve.stdout", workdir / "serve.stderr")
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"objectjobs serve exited {proc.returncode}\n{server.stdout}\n{server.stderr}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"objectjobs serve not ready\n{server.stdout}\n{server.stderr}")
            with contextlib.suppress(httpx.HTTPError):
                healthy = httpx.get(f"{url}/healthz", verify=False, timeout=2).status_code == 200
                if healthy and LISTEN_LINE.search(server.stdout):
                    break
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    password = PASSWORD_LINE.search(server.stdout)
    server.admin_password = password.group(1) if password else ""
    server.url = url
    return server
