"""/metrics after a job: Prometheus text that parses, with the figures the job produced."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_metrics_after_a_job(make_api: Callable[..., Awaitable[Api]]) -> None:
    api = await make_api(worker=True)  # the app's own worker runs the job
    bucket = api.storage.root / "b1"
    for i in range(250):
        (bucket / f"k{i:03d}").write_bytes(b"x" * i)
    job = await api.create_job("b1", params={"fix": "true"})  # whole bucket: no prefix
    for _ in range(600):
        status = await api.post("/jobs/status", {"jobId": job["jobId"]})
        if status.json()["status"]["jobState"] == "COMPLETE":
            break
        await asyncio.sleep(0.05)
    assert status.json()["status"]["jobState"] == "COMPLETE", status.text

    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    kind = ("type", "METRIC_RECONCILIATION")
    assert got[("objectjobs_jobs", (("state", "COMPLETE"), kind))] == 1
    assert got[("objectjobs_jobs", (("state", "EXAMINING"), kind))] == 0
    assert got[("objectjobs_objects_processed_total", (kind,))] == 250
    usage = (("bucket", "b1"), ("figure", "currentBytes"))
    assert got[("objectjobs_bucket_usage", usage)] == sum(range(250))
    listing = (("driver", "local"), ("operation", "list_versions_sized"))  # METRIC needs no etag
    assert got[("objectjobs_storage_request_seconds_count", listing)] >= 2  # two phases
    created = (("operation", "/jobs/create"), ("status", "200"))  # both prefixes: one operation
    assert got[("objectjobs_api_request_seconds_count", created)] == 1
    assert ("objectjobs_lease_takeovers_total", ()) in got
