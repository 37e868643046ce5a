"""Worker processes beside the serving one (``worker.processes``, SPEC §4).

A Python process runs one thread of Python at a time, so one worker works its tasks on one
core. A node with more cores runs more worker processes; they share the job store as the
workers of other nodes do (leases, checkpoints, takeover), so one job's partitions are
worked on every core.

Each child is ``python -m objectjobs.cli.worker_pool``. It reads the parent's settings as one
line of JSON on its standard input and keeps that pipe open: when the parent ends, even by
``kill -9``, the child reads end-of-file and stops as a stopped worker does (running tasks
stop, their leases lapse, another worker resumes them from their last checkpoint). A child
that dies is started again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from objectjobs.settings import Settings

log = logging.getLogger("objectjobs.worker")

CHILD_MODULE = "objectjobs.cli.worker_pool"
#: a child's graceful stop (end of its input) gets this long before it is killed
STOP_TIMEOUT_S = 10.0
#: pause before a child that died is started again, doubling while it keeps dying young
RESTART_DELAY_S = (1.0, 30.0)
#: a child that ran this long before dying died of something else than its start-up
HEALTHY_AFTER_S = 60.0


def settings_json(settings: Settings) -> str:
    """The settings as one line a child rebuilds them from, secrets revealed (the pipe is
    private to the two processes)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, Enum):
            return value.value
        raise TypeError(f"cannot pass {type(value).__name__} to a worker process")

    return json.dumps(settings.model_dump(by_alias=True), default=plain)


class WorkerProcesses:
    """``count`` child worker processes, kept running until cancelled."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.count = count
        self._payload = (settings_json(settings) + "\n").encode()
        self.pids: set[int] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[WorkerProcesses]:
        """Run the children for the duration of the block; stop them (and wait) at its end."""
        keepers = [
            asyncio.create_task(self._keep(i), name=f"worker process {i + 1}")
            for i in range(self.count)
        ]
        try:
            yield self
        finally:
            for keeper in keepers:
                keeper.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep(self, index: int) -> None:
        delay = RESTART_DELAY_S[0]
        while True:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", CHILD_MODULE, stdin=asyncio.subprocess.PIPE
            )
            self.pids.add(proc.pid)
            try:
                assert proc.stdin is not None
                proc.stdin.write(self._payload)
                with contextlib.suppress(ConnectionError):  # it died at once: seen below
                    await proc.stdin.drain()
                log.info("worker process %d started (pid %d)", index + 1, proc.pid)
                code = await proc.wait()
            except asyncio.CancelledError:
                await _stop(proc)
                raise
            finally:
                self.pids.discard(proc.pid)
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                delay = RESTART_DELAY_S[0]
            log.warning(
                "worker process %d (pid %d) exited with status %s; starting it again in %.0f s",
                index + 1,
                proc.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(RESTART_DELAY_S[1], delay * 2)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End of input first (the child stops its tasks cleanly), a kill if it does not."""
    if proc.returncode is not None:
        return
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await proc.wait()
    except TimeoutError:
        log.warning("worker process pid %d did not stop; killing it", proc.pid)
        proc.kill()
        await proc.wait()


def child_main() -> None:
    """A child worker process: settings from the first line of standard input, then work
    until that input ends (the parent stopped or died) or a signal stops it."""
    from objectjobs.cli.common import run
    from objectjobs.cli.server import work_until_stopped
    from objectjobs.logs import setup_logging

    line = sys.stdin.buffer.readline()
    if not line:
        return  # the parent ended before it sent anything
    settings = Settings.model_validate(json.loads(line))
    setup_logging(settings)
    run(work_until_stopped(settings, stop_on_eof=sys.stdin.fileno(), start_processes=False))


if __name__ == "__main__":
    child_main()
