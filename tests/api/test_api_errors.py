"""The error contract (SPEC §2.3): one body shape, the right status for each failure."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from objectjobs.api.app import create_app
from objectjobs.settings import S3EndpointSettings
from objectjobs.storage.s3 import S3Storage
from objectjobs.store.sql import SqlJobStore
from tests.api.conftest import Api

ERROR_KEYS = {"code", "message", "details"}


def _is_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == ERROR_KEYS
    assert all(isinstance(v, str) for v in body.values())
    assert "Traceback" not in r.text
    return body


@pytest.mark.parametrize("prefix", ["/mapi/v1", "/v1"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/list"),
        ("PUT", "/jobs/create"),
        ("DELETE", "/jobs/status"),
        ("GET", "/user/info"),
        ("PATCH", "/bucket/usage"),
        ("POST", "/csrf"),
    ],
)
async def test_wrong_method_is_405_with_error_body(
    shared_api: Api, prefix: str, method: str, path: str
) -> None:
    r = await shared_api.client.request(method, prefix + path, headers=await shared_api.headers())
    body = _is_error(r, 405)
    assert body["code"] == "MethodNotAllowed"


async def test_unknown_path_is_404_with_error_body(shared_api: Api) -> None:
    _is_error(
        await shared_api.client.post("/mapi/v1/jobs/nothing", headers=await shared_api.headers()),
        404,
    )


async def test_malformed_json_is_400(shared_api: Api) -> None:
    headers = await shared_api.headers()
    headers["Content-Type"] = "application/json"
    for raw in (b'{"bucketName": ', b"not json", b'{"a":1}}'):
        r = await shared_api.client.post("/mapi/v1/jobs/list", content=raw, headers=headers)
        _is_error(r, 400)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/jobs/list", {"pageSize": "5"}),  # wrong type
        ("/jobs/list", {"pageSize": -1}),  # negative
        ("/jobs/list", {"pageSize": 10_001}),  # above the maximum
        ("/jobs/list", {"pageSize": 1.5}),
        ("/jobs/list", {"bucket": "b1"}),  # unknown field
        ("/jobs/list", {"userId": 3}),
        ("/jobs/list", {"pageToken": "not-a-token"}),
        ("/jobs/list", []),
        ("/jobs/create", {"jobType": "NOPE", "bucketName": "b1"}),  # unknown enum
        ("/jobs/create", {"jobType": "METRIC_RECONCILIATION"}),  # missing field
        (
            "/jobs/create",
            {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1", "jobParams": {"fix": True}},
        ),  # not a string
        ("/jobs/status", {"jobId": {"id": 2**31}}),  # out of int32 range
        ("/jobs/status", {"jobId": {"id": "12"}}),
        ("/jobs/status", {}),
        ("/jobs/report", {"jobId": {"id": 1}, "outcome": "MAYBE"}),
        ("/user/info", {"x": 1}),
    ],
)
async def test_invalid_requests_are_400(shared_api: Api, path: str, body: Any) -> None:
    body_out = _is_error(await shared_api.post(path, body), 400)
    assert body_out["code"] == "InvalidRequest"


async def test_unknown_jobparams_key_names_accepted_keys(shared_api: Api) -> None:
    r = await shared_api.post(
        "/jobs/create",
        {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1", "jobParams": {"fixx": "true"}},
    )
    body = _is_error(r, 400)
    assert "fixx" in body["message"]
    for key in ("prefix", "dryRun", "maxFailurePercent", "objectsPerSecond", "fix"):
        assert key in body["message"]


@pytest.mark.parametrize(
    ("job_type", "params", "named"),
    [
        ("METRIC_RECONCILIATION", {"dryRun": "yes"}, "'true' or 'false'"),
        ("METRIC_RECONCILIATION", {"maxFailurePercent": "101"}, "maxFailurePercent"),
        ("METRIC_RECONCILIATION", {"maxFailurePercent": "-1"}, "maxFailurePercent"),
        ("METRIC_RECONCILIATION", {"objectsPerSecond": "0"}, "objectsPerSecond"),
        ("METRIC_RECONCILIATION", {"objectsPerSecond": "fast"}, "objectsPerSecond"),
        ("BATCH_REPLICATE", {"replicationFilter": "SOME"}, "['ALL', 'FAILED', 'NEW']"),
        ("BATCH_REPLICATE", {"target": "nowhere"}, "target"),
        ("LIFECYCLE_UPDATE", {"policy": "{"}, "policy"),
        ("LIFECYCLE_UPDATE", {"policy": '{"Rules": [{"Status": "On"}]}'}, "Status"),
        ("LIFECYCLE_UPDATE", {"asOf": "yesterday"}, "asOf"),
        (
            "TRIGGER_RECONCILIATION",
            {"modifiedAfter": "2024-02-01T00:00:00Z", "modifiedBefore": "2024-01-01T00:00:00Z"},
            "modifiedAfter",
        ),
        ("TRIGGER_RECONCILIATION", {"force": "TRUE"}, "force"),
        ("TRIGGER_RECONCILIATION", {"fix": "true"}, "fix"),  # another type's key
    ],
)
async def test_bad_param_values_are_400(
    shared_api: Api, job_type: str, params: dict[str, str], named: str
) -> None:
    r = await shared_api.post(
        "/jobs/create", {"jobType": job_type, "bucketName": "b1", "jobParams": params}
    )
    assert named in _is_error(r, 400)["message"]


async def test_unreachable_storage_is_503(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api()
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = S3Storage(
        S3EndpointSettings(
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key=SecretStr("k"),
            secret_key=SecretStr("s"),
        ),
        max_attempts=1,
        connect_timeout=2,
    )
    app = create_app(api.settings, store=api.store, storage=storage)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://127.0.0.1"
        ) as client,
    ):
        headers = await api.headers()
        for path, body in [
            ("/mapi/v1/jobs/create", {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1"}),
            ("/v1/bucket/usage", {"bucketName": "b1"}),
        ]:
            r = await client.post(path, json=body, headers=headers)
            assert _is_error(r, 503)["code"] == "StorageUnavailable"
    await storage.close()


async def test_healthz_openapi_and_docs(shared_api: Api) -> None:
    r = await shared_api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    spec = (await shared_api.client.get("/openapi.json")).json()
    for prefix in ("/mapi/v1", "/v1"):
        for op in (
            "jobs/list",
            "jobs/create",
            "jobs/cancel",
            "jobs/status",
            "user/info",
            "serial_number/get",
            "jobs/describe",
            "jobs/report",
            "bucket/usage",
        ):
            responses = spec["paths"][f"{prefix}/{op}"]["post"]["responses"]
            assert "422" not in responses
            for status in ("400", "401", "403"):
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorBody")
    assert (await shared_api.client.get("/docs")).status_code == 200


async def test_healthz_is_503_when_store_is_down(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api()
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = SqlJobStore(f"postgresql+psycopg://u:p@127.0.0.1:{port}/none")
    api.app.state.ctx.store = down  # the running app now talks to a database that is down
    r = await api.client.get("/healthz")
    await down.close()
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}
