"""Throwaway servers for the test suite: PostgreSQL, Ceph RGW, moto, RabbitMQ.

Every server binds 127.0.0.1 on a free port and lives in its own temp dir. A start that fails
raises ServerStartError carrying the tail of the server's log, so the fixture can fail loudly.
Every started server registers an atexit fallback, so a crashed session still stops it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0


class ServerStartError(RuntimeError):
    """A test server did not come up; the message holds its log tail."""


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def log_tail(*paths: Path, lines: int = 40) -> str:
    out: list[str] = []
    for p in paths:
        for f in sorted(p.glob("*.log")) if p.is_dir() else [p]:
            if f.is_file():
                text = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {f} (last {len(text)} lines) ---\n" + "\n".join(text))
    return "\n".join(out) or "(no log output)"


def _wait_for(
    check: Callable[[], bool],
    what: str,
    logs: list[Path],
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"{what} exited with code {proc.returncode}\n{log_tail(*logs)}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise ServerStartError(f"{what} not ready after {timeout:.0f}s\n{log_tail(*logs)}")


def _spawn(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    # A new session makes the server its own process group, so stop() can signal exactly
    # the processes it started (shell wrappers, erl children) and nothing else.
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Children of the group may outlive the leader; KILL whatever is left of the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@dataclass
class _Server:
    """Base: a temp dir plus stop actions run once, at stop() or at interpreter exit."""

    tmp: Path
    _stops: list[Callable[[], None]] = field(default_factory=list)
    _stopped: bool = False

    def __post_init__(self) -> None:
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for action in reversed(self._stops):
            with contextlib.suppress(Exception):
                action()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _start_guarded(server: _Server, start: Callable[[], None]) -> None:
    try:
        start()
    except BaseException:
        server.stop()
        raise


# ----------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        res = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(res.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise ServerStartError("PostgreSQL binaries (initdb, pg_ctl) not found; run scripts/test.sh")


@dataclass
class PostgresServer(_Server):
    port: int = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _conninfo(self, db: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


def start_postgres() -> PostgresServer:
    bindir = _pg_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="oj-pg-"))
    server = PostgresServer(tmp=tmp, port=free_port())
    # PostgreSQL refuses to run as root: as root, run every server command as `postgres`.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = tmp / "data", tmp / "postgres.log"

    def run(cmd: list[str]) -> None:
        res = subprocess.run(
            as_user + cmd,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp,
            timeout=START_TIMEOUT,
        )
        if res.returncode != 0:
            raise ServerStartError(
                f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{log_tail(log)}"
            )

    def start() -> None:
        run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C.UTF-8",
            ]
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {tmp} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "start",
            ]
        )
        server._stops.append(
            lambda: run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        )

    _start_guarded(server, start)
    return server


# ----------------------------------------------------------------------------- Ceph RGW


def shared_ceph_dir() -> Path:
    override = os.environ.get("OBJECTJOBS_SHARED_CEPH")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "ceph"


def _rgw_ports() -> tuple[int, int]:
    """Free MON_PORT (its v1 port is +3489) and a free 100-port OSD range, below the
    kernel's ephemeral range so free_port() picks elsewhere can't collide with them."""
    for _ in range(200):
        mon = random.randrange(10000, 16000)
        osd = random.randrange(200, 320) * 100
        if (
            _port_free(mon)
            and _port_free(mon + 3489)
            and all(_port_free(p) for p in range(osd, osd + 100))
        ):
            return mon, osd
    raise ServerStartError("no free port range for Ceph mon/OSD on 127.0.0.1")


@dataclass
class RgwServer(_Server):
    endpoint: S3Endpoint | None = None


def start_rgw_server() -> RgwServer:
    ceph = shared_ceph_dir()
    script = ceph / "start-rgw.sh"
    if not script.is_file():
        raise ServerStartError(f"{script} not found (shared/ must sit beside the repo)")
    tmp = Path(tempfile.mkdtemp(prefix="oj-rgw-"))
    server = RgwServer(tmp=tmp)
    cluster, log = tmp / "cluster", tmp / "start-rgw.log"
    mon, osd = _rgw_ports()
    env = dict(
        os.environ,
        RGW_PORT=str(free_port()),
        MON_PORT=str(mon),
        OSD_PORT_MIN=str(osd),
        RGW_TIMEOUT="60",
    )

    def start() -> None:
        server._stops.append(
            lambda: subprocess.run(
                ["bash", str(ceph / "stop-rgw.sh"), str(cluster)],
                capture_output=True,
                check=False,
                timeout=60,
            )
        )
        with log.open("wb") as err:
            res = subprocess.run(
                ["bash", str(script), str(cluster)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                check=False,
                timeout=START_TIMEOUT + 60,
            )
        if res.returncode != 0:
            raise ServerStartError(
                f"start-rgw.sh failed ({res.returncode})\n"
                f"{log_tail(log, cluster / 'log', lines=25)}"
            )
        out = dict(line.split("=", 1) for line in res.stdout.decode().splitlines() if "=" in line)
        server.endpoint = S3Endpoint(
            endpoint_url=out["S3_ENDPOINT"],
            access_key=out["AWS_ACCESS_KEY_ID"],
            secret_key=out["AWS_SECRET_ACCESS_KEY"],
        )

    _start_guarded(server, start)
    return server


# ----------------------------------------------------------------------------- moto


@dataclass
class MotoServer(_Server):
    endpoint: S3Endpoint | None = None


def start_moto_server() -> MotoServer:
    tmp = Path(tempfile.mkdtemp(prefix="oj-moto-"))
    server = MotoServer(tmp=tmp)
    port, log = free_port(), tmp / "moto.log"

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2) as r:
            return int(r.status) == 200

    def start() -> None:
        proc = _spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log, cwd=tmp
        )
        server._stops.append(lambda: _kill_group(proc))
        _wait_for(ready, "moto server", [log], proc)
        # moto accepts any credentials; distinct ones make mix-ups between endpoints visible.
        server.endpoint = S3Endpoint(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key=f"moto{port}",
            secret_key=f"moto-secret-{port}",
        )

    _start_guarded(server, start)
    return server


# ----------------------------------------------------------------------------- RabbitMQ

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class RabbitServer(_Server):
    url: str = ""


def _amqp_login(url: str) -> bool:
    import aio_pika

    async def probe() -> None:
        conn = await aio_pika.connect(url, timeout=5)
        await conn.close()

    # A thread with its own loop: the caller may already be inside pytest-asyncio's loop.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(probe())
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(15)
    if errors or t.is_alive():
        raise ServerStartError(f"AMQP login failed: {errors!r}")
    return True


def start_rabbitmq() -> RabbitServer:
    server_bin = RABBIT_BIN / "rabbitmq-server"
    if not server_bin.exists() or not shutil.which("epmd"):
        raise ServerStartError("rabbitmq-server/epmd not installed; run scripts/test.sh")
    tmp = Path(tempfile.mkdtemp(prefix="oj-rabbit-"))
    server = RabbitServer(tmp=tmp)
    port, dist, epmd_port = free_port(), free_port(), free_port()
    logs = tmp / "log"
    logs.mkdir()
    (tmp / "enabled_plugins").write_text("[].\n")
    (tmp / "rabbitmq-env.conf").write_text("")
    (tmp / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
    node = f"oj{uuid.uuid4().hex[:10]}@localhost"
    env = dict(
        os.environ,
        HOME=str(tmp),  # the Erlang cookie is written there
        ERL_EPMD_ADDRESS="127.0.0.1",
        ERL_EPMD_PORT=str(epmd_port),
        RABBITMQ_NODENAME=node,
        RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
        RABBITMQ_NODE_PORT=str(port),
        RABBITMQ_DIST_PORT=str(dist),
        RABBITMQ_MNESIA_BASE=str(tmp / "mnesia"),
        RABBITMQ_LOG_BASE=str(logs),
        RABBITMQ_CONF_ENV_FILE=str(tmp / "rabbitmq-env.conf"),
        RABBITMQ_CONFIG_FILE=str(tmp / "rabbitmq.conf"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(tmp / "enabled_plugins"),
        RABBITMQ_PLUGINS_EXPAND_DIR=str(tmp / "plugins-expand"),
        RABBITMQ_PID_FILE=str(tmp / "rabbit.pid"),
        # The distribution listener would otherwise bind every interface.
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
    )
    server.url = f"amqp://guest:guest@127.0.0.1:{port}/"

    def start() -> None:
        # Our own epmd in the foreground, on its own port: erl reuses it instead of spawning
        # a daemonised one that would outlive the session.
        epmd = _spawn(
            ["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)],
            logs / "epmd.log",
            env=env,
            cwd=tmp,
        )
        server._stops.append(lambda: _kill_group(epmd))
        _wait_for(lambda: _port_open(epmd_port), "epmd", [logs], epmd, timeout=15)
        proc = _spawn([str(server_bin)], logs / "server-stdout.log", env=env, cwd=tmp)
        # Throwaway node: no graceful shutdown needed, and it would cost seconds.
        server._stops.append(lambda: _kill_group(proc, grace=0))
        _wait_for(lambda: _port_open(port), "rabbitmq AMQP port", [logs], proc)
        _wait_for(lambda: _amqp_login(server.url), "rabbitmq login", [logs], proc, timeout=30)

    _start_guarded(server, start)
    return server
