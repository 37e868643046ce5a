"""Structured logs: every line of a job's work carries the job id (JSON option)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from objectjobs.logs import setup_logging
from objectjobs.models import JobState
from objectjobs.settings import Settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.interface import JobStore

from .support import create_job, running_workers, wait_for


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_json_lines_of_a_job_carry_its_id(
    store: JobStore,
    local: LocalStorage,
    settings: Settings,
    owner: int,
    capfd: pytest.CaptureFixture[str],
    restore_root_logger: None,
) -> None:
    setup_logging(
        settings.model_copy(update={"log": settings.log.model_copy(update={"json_format": True})})
    )
    await local.create_bucket("logged")
    (local.root / "logged" / "a").write_bytes(b"1")
    job = await create_job(store, owner, "logged")
    async with running_workers(settings, store, local):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE
    lines = [
        json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")
    ]
    work = [r for r in lines if r["logger"] == "objectjobs.worker" and "task" in r["message"]]
    assert work, lines
    assert all(r["job_id"] == job.id for r in work)
    # lines outside any job's work have no job id
    assert any("job_id" not in r for r in lines if "worker" in r["message"].split()[:1])
