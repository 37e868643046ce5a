"""The embedded default's other worker processes, for benchmarks that run their job's first
worker in-process: ``worker.processes - 1`` children (``objectjobs.cli.worker_pool``), up and
polling the job store before the measured job is created."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any


class Children:
    """The running children: their CPU seconds so far, read from /proc (so a job's share
    is measured without their start-up, as on a node whose workers already run)."""

    def __init__(self, pids: set[int]) -> None:
        self.pids = pids

    def __len__(self) -> int:
        return len(self.pids)

    def cpu_s(self) -> float:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(FileNotFoundError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                return True
    return False


@contextlib.asynccontextmanager
async def worker_processes(settings: Any, db_path: Path) -> AsyncIterator[Children]:
    """Run the children for the block. They count as up once each holds the job store's
    database open (their worker starts right after)."""
    from objectjobs.cli.worker_pool import WorkerProcesses

    count = settings.worker.processes - 1
    if count < 1:
        yield Children(set())
        return
    pool = WorkerProcesses(settings, count)
    async with pool.running():
        deadline = time.monotonic() + 60
        while len(pool.pids) < count or not all(_has_open(p, db_path) for p in pool.pids):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker processes did not start")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # from store open to the worker's first claim
        yield Children(set(pool.pids))
