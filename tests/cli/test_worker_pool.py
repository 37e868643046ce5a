"""The settings a worker process is started with (``objectjobs.cli.worker_pool``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from objectjobs.cli.worker_pool import settings_json
from objectjobs.settings import (
    NotifySettings,
    NotifyTargetSettings,
    S3EndpointSettings,
    Settings,
    load_settings,
)


def test_a_worker_process_gets_the_same_settings_secrets_included(tmp_path: Path) -> None:
    settings = load_settings(None, data_dir=tmp_path).model_copy(
        update={
            "targets": {
                "dr": S3EndpointSettings(
                    endpoint_url="http://127.0.0.1:9000",
                    access_key=SecretStr("AK"),
                    secret_key=SecretStr("the secret"),
                )
            },
            "notify": NotifySettings(
                targets={
                    "hook": NotifyTargetSettings(
                        kind="webhook", url="http://127.0.0.1:1/x", hmac_secret=SecretStr("h")
                    )
                }
            ),
        }
    )
    settings.worker.processes = 4
    settings.log.json_format = True
    rebuilt = Settings.model_validate(json.loads(settings_json(settings)))
    assert rebuilt.model_dump() == settings.model_dump()
    assert rebuilt.worker.processes == 4  # the node's count: its processes share task slots
    dr = rebuilt.targets["dr"]
    assert dr.secret_key is not None and dr.secret_key.get_secret_value() == "the secret"
    assert rebuilt.log.json_format is True


def test_processes_default_to_the_cores_this_process_may_use(tmp_path: Path) -> None:
    import os

    assert load_settings(None, data_dir=tmp_path).worker.processes == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("concurrency", "processes", "tasks"),
    [(16, 1, 4), (16, 2, 2), (16, 3, 2), (16, 8, 1), (32, 2, 4), (64, 1, 8), (1, 4, 1)],
)
def test_a_nodes_processes_share_its_task_slots(
    tmp_path: Path, concurrency: int, processes: int, tasks: int
) -> None:
    from objectjobs.storage.local import LocalStorage
    from objectjobs.worker import Worker

    settings = load_settings(
        None, data_dir=tmp_path, worker={"concurrency": concurrency, "processes": processes}
    )
    # a worker that took every slot of the node would leave the other cores idle on a job
    # of a few partitions
    worker = Worker(settings, store=None, storage=LocalStorage(tmp_path))  # type: ignore[arg-type]
    assert worker.max_tasks == tasks
