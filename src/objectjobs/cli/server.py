"""``objectjobs serve`` and ``objectjobs worker``: the server processes (SPEC §4, §5.3)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from objectjobs.cli.common import build_settings, one_line_errors, run
from objectjobs.errors import ObjectJobsError

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager

    from objectjobs.settings import Settings

log = logging.getLogger("objectjobs.cli")

Config = Annotated[
    Path | None,
    typer.Option("--config", envvar="OBJECTJOBS_CONFIG", help="TOML configuration file."),
]


def _say(line: str) -> None:
    # stdout is a pipe under systemd or a test harness: flush so each line shows at once
    print(line, flush=True)


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    from objectjobs.tls import check_pair, ensure_self_signed

    server = settings.server
    if server.tls_cert is not None and server.tls_key is not None:
        check_pair(server.tls_cert, server.tls_key)
        return server.tls_cert, server.tls_key
    if server.tls_self_signed:
        return ensure_self_signed(settings.data_dir, server.host)
    return None


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so "port in use" is a clean one-line error
    before anything else starts (and port 0 tells us the port it got)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ObjectJobsError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ObjectJobsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _base_url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/"


async def _announce(
    server: Any, url: str, settings: Settings, tls: tuple[Path, Path] | None
) -> None:
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.05)
    _say(f"objectjobs listening on {url}")
    _say(f"  console:  {url}console/")
    _say(f"  API docs: {url}docs")
    if tls is not None and settings.server.tls_cert is None:
        _say(f"  TLS:      self-signed certificate {tls[0]}")


async def _serve(settings: Settings) -> None:
    tls = tls_files(settings)
    sock = bind(settings.server.host, settings.server.port)
    # the application is imported only once the port is ours: a busy port fails at once
    import uvicorn

    from objectjobs.accounts import ensure_admin
    from objectjobs.api.app import create_app
    from objectjobs.wiring import open_default_storage, open_store
    from objectjobs.worker import tune_gc

    async with contextlib.AsyncExitStack() as stack:
        stack.callback(sock.close)
        port = int(sock.getsockname()[1])
        # store and storage are opened here, before uvicorn, so a bad [database] or
        # [storage] section fails in one line rather than in a lifespan traceback
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        storage = open_default_storage(settings)
        stack.push_async_callback(storage.close)
        # the admin is created here so a generated password can be printed; the app's own
        # bootstrap then finds the account (ensure_admin is idempotent)
        password = await ensure_admin(store, settings)
        admin = settings.auth.admin_user
        if password is not None:
            _say(f"admin user: {admin}")
            _say(f"admin password (shown once): {password}")
        elif settings.auth.admin_password is not None:
            _say(f"admin user: {admin} (password from auth.admin_password)")
        else:
            _say(f"admin user: {admin} (password as generated at first start)")
        background: list[Callable[[], AbstractAsyncContextManager[Any]]] = []
        if settings.worker.enabled and settings.worker.processes > 1:
            from objectjobs.cli.worker_pool import WorkerProcesses

            # the app runs one worker; the others are processes of their own. They run in
            # the app's lifespan, so they are stopped before uvicorn re-raises its signal.
            background.append(WorkerProcesses(settings, settings.worker.processes - 1).running)
        config = uvicorn.Config(
            create_app(settings, store=store, storage=storage, background=background),
            host=settings.server.host,
            port=port,
            ssl_certfile=str(tls[0]) if tls else None,
            ssl_keyfile=str(tls[1]) if tls else None,
            log_config=None,
            lifespan="on",
            server_header=False,
        )
        server = uvicorn.Server(config)
        tune_gc()  # the app is built: what exists now lives as long as the process
        url = _base_url("https" if tls else "http", settings.server.host, port)
        announce = asyncio.create_task(_announce(server, url, settings, tls))
        try:
            await server.serve(sockets=[sock])
        finally:
            announce.cancel()
        if not server.started:
            raise ObjectJobsError("the server did not start (see the log above)")


@one_line_errors
def serve(
    config: Config = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (default ./objectjobs-data).")
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
) -> None:
    """Run the API, the web console and a worker in one process."""
    from objectjobs.logs import setup_logging

    settings = build_settings(config, data_dir, host, port)
    setup_logging(settings)
    run(_serve(settings))


async def _work(settings: Settings, *, start_processes: bool = True) -> None:
    from objectjobs.cli.worker_pool import WorkerProcesses
    from objectjobs.wiring import open_default_storage, open_store
    from objectjobs.worker import run_worker, tune_gc

    async with contextlib.AsyncExitStack() as stack:
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        storage = open_default_storage(settings)
        stack.push_async_callback(storage.close)
        # started once the store's schema is up to date; a worker process starts none
        if start_processes and settings.worker.processes > 1:
            pool = WorkerProcesses(settings, settings.worker.processes - 1)
            await stack.enter_async_context(pool.running())
        log.info("worker started")
        tune_gc()
        await run_worker(settings, store, storage)


async def work_until_stopped(
    settings: Settings, *, stop_on_eof: int | None = None, start_processes: bool = True
) -> None:
    """Run a worker until SIGTERM or SIGINT (or end of file on ``stop_on_eof``), which
    cancel the work: running tasks stop, their leases lapse and another worker resumes
    them from their last checkpoint. ``start_processes``: also the node's other worker
    processes (``worker.processes``); False in those processes themselves."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stopped: list[object] = []

    def stop(why: object) -> None:
        if not stopped:
            stopped.append(why)
            main.cancel()

    def read_or_stop() -> None:
        assert stop_on_eof is not None
        try:
            ended = not os.read(stop_on_eof, 4096)
        except OSError:
            ended = True
        if ended:
            loop.remove_reader(stop_on_eof)
            stop("end of input")

    # installed before the store is opened, so a stop during start-up is clean too
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    if stop_on_eof is not None:
        loop.add_reader(stop_on_eof, read_or_stop)
    try:
        await _work(settings, start_processes=start_processes)
    except asyncio.CancelledError:
        if not stopped:
            raise
        main.uncancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if stop_on_eof is not None:
            loop.remove_reader(stop_on_eof)
    log.info("worker stopped")


@one_line_errors
def worker(config: Config = None) -> None:
    """Run a worker only (scale out against a shared PostgreSQL job store)."""
    from objectjobs.logs import setup_logging

    settings = build_settings(config)
    setup_logging(settings)
    run(work_until_stopped(settings))
