"""The settings a worker process is started with (``objectjobs.cli.worker_pool``)."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert rebuilt.worker.processes == 1  # a worker process starts none of its own
    rebuilt.worker.processes = 4
    assert rebuilt.model_dump() == settings.model_dump()
    dr = rebuilt.targets["dr"]
    assert dr.secret_key is not None and dr.secret_key.get_secret_value() == "the secret"
    assert rebuilt.log.json_format is True


def test_processes_default_to_the_cores_this_process_may_use(tmp_path: Path) -> None:
    import os

    assert load_settings(None, data_dir=tmp_path).worker.processes == len(os.sched_getaffinity(0))
