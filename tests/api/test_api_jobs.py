"""The jobs operations (SPEC §2.4-§2.6): create, status, cancel, list, describe, report, usage."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from objectjobs.models import JobState, JobType, NewJob, Outcome, Progress, ResultRecord
from objectjobs.wakeups import NodeWakeups
from tests.api.conftest import Api

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
JOB_KEYS = {
    "jobId",
    "jobState",
    "jobType",
    "startTime",
    "completeTime",
    "jobParams",
    "jobStats",
    "bucketName",
}


def _check_job_shape(job: dict[str, Any]) -> None:
    assert set(job) == JOB_KEYS
    assert set(job["jobId"]) == {"id"} and -(2**31) <= job["jobId"]["id"] < 2**31
    assert TIME_RE.match(job["startTime"])
    assert job["completeTime"] is None or TIME_RE.match(job["completeTime"])
    assert set(job["jobStats"]) == {"processed", "failed"}


@pytest.mark.parametrize("prefix", ["/mapi/v1", "/v1"])
async def test_create_and_status(api: Api, prefix: str) -> None:
    params = {"prefix": "logs/", "dryRun": "true", "fix": "false"}
    r = await api.post(
        "/jobs/create",
        {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1", "jobParams": params},
        user="oper",
        prefix=prefix,
    )
    assert r.status_code == 200, r.text
    job = r.json()["jobStatus"]
    _check_job_shape(job)
    assert job["jobState"] == "EXAMINING" and job["completeTime"] is None
    assert job["jobParams"] == params and job["bucketName"] == "b1"
    assert job["jobType"] == "METRIC_RECONCILIATION"
    stored = await api.store.get_job(job["jobId"]["id"])
    assert stored is not None
    assert stored.owner_id == api.users["oper"].id
    r = await api.post("/jobs/status", {"jobId": job["jobId"]}, user="oper", prefix=prefix)
    assert r.status_code == 200 and r.json() == {"status": job}


async def test_create_rules(api: Api) -> None:
    base = {"jobType": "LIFECYCLE_UPDATE", "bucketName": "b1"}
    r = await api.post("/jobs/create", {**base, "bucketName": "missing"})
    assert r.status_code == 404 and r.json()["code"] == "NoSuchBucket"
    r = await api.post("/jobs/create", base, user="view")
    assert r.status_code == 403 and r.json()["code"] == "Forbidden"
    first = await api.create_job("b1", "LIFECYCLE_UPDATE", params={"prefix": "a/"})
    r = await api.post("/jobs/create", {**base, "jobParams": {"prefix": "a/"}})
    assert r.status_code == 400 and r.json()["code"] == "DuplicateActiveJob"
    assert str(first["jobId"]["id"]) in r.json()["details"] + r.json()["message"]
    # another prefix, bucket or type is not a duplicate
    await api.create_job("b1", "LIFECYCLE_UPDATE", params={"prefix": "b/"})
    await api.create_job("b2", "LIFECYCLE_UPDATE", params={"prefix": "a/"})
    await api.create_job("b1", "METRIC_RECONCILIATION", params={"prefix": "a/"})


async def test_idempotency_key_returns_same_job(api: Api) -> None:
    body = {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1", "jobParams": {"fix": "false"}}
    key = {"Idempotency-Key": "retry-1"}
    a = await api.post("/jobs/create", body, user="oper", extra_headers=key)
    b = await api.post("/jobs/create", body, user="oper", extra_headers=key)
    assert a.status_code == b.status_code == 200, b.text
    assert a.json() == b.json()
    jobs = await api.store.list_jobs(owner_id=api.users["oper"].id)
    assert len(jobs) == 1


async def test_visibility_of_jobs(api: Api) -> None:
    theirs = await api.create_job("b1", user="oper2")
    job_id = {"jobId": theirs["jobId"]}
    for path in ("/jobs/status", "/jobs/describe", "/jobs/cancel", "/jobs/report"):
        r = await api.post(path, job_id, user="oper")
        assert r.status_code == 404 and r.json()["code"] == "JobNotFound", path
    r = await api.post("/jobs/status", {"jobId": {"id": 12345}})
    assert r.status_code == 404
    r = await api.post("/jobs/status", job_id)  # admin sees everyone's
    assert r.status_code == 200 and r.json()["status"]["jobId"] == theirs["jobId"]


async def test_cancel_rules(api: Api) -> None:
    own = await api.create_job("b1", user="oper")
    r = await api.post("/jobs/cancel", {"jobId": own["jobId"]}, user="oper")
    assert r.status_code == 200, r.text
    cancelled = r.json()["status"]
    assert cancelled["jobState"] == "CANCELLED" and TIME_RE.match(cancelled["completeTime"])
    again = await api.post("/jobs/cancel", {"jobId": own["jobId"]}, user="oper")
    assert again.status_code == 200 and again.json()["status"] == cancelled
    # the admin may cancel anyone's job
    other = await api.create_job("b1", user="oper2")
    r = await api.post("/jobs/cancel", {"jobId": other["jobId"]})
    assert r.status_code == 200 and r.json()["status"]["jobState"] == "CANCELLED"
    # ended jobs cannot be cancelled
    for state in (JobState.COMPLETE, JobState.FAILED):
        job = await api.create_job("b2", user="oper")
        await api.store.finish_job(job["jobId"]["id"], state, reason="test")
        r = await api.post("/jobs/cancel", {"jobId": job["jobId"]}, user="oper")
        assert r.status_code == 400 and r.json()["code"] == "JobNotCancellable"
    # a viewer may not cancel, not even their own job
    viewer_job, _ = await api.store.create_job(
        NewJob(JobType.METRIC_RECONCILIATION, "b1", {}, api.users["view"].id, prefix="v/")
    )
    r = await api.post("/jobs/cancel", {"jobId": {"id": viewer_job.id}}, user="view")
    assert r.status_code == 403


async def test_list_visibility_and_filters(api: Api) -> None:
    mine = [await api.create_job(b, user="oper") for b in ("b1", "b2")]
    theirs = await api.create_job("b1", user="oper2")
    ids = lambda r: [j["jobId"]["id"] for j in r.json()["jobs"]]  # noqa: E731

    r = await api.post("/jobs/list", {}, user="oper")
    assert sorted(ids(r)) == sorted(j["jobId"]["id"] for j in mine)
    r = await api.post("/jobs/list", None, user="oper")  # no body at all
    assert r.status_code == 200 and len(ids(r)) == 2
    r = await api.post("/jobs/list", {"bucketName": "b2"}, user="oper")
    assert ids(r) == [mine[1]["jobId"]["id"]]
    r = await api.post("/jobs/list", {"userId": {"id": api.users["oper"].id}}, user="oper")
    assert len(ids(r)) == 2
    r = await api.post("/jobs/list", {"userId": {"id": api.users["oper2"].id}}, user="oper")
    assert r.status_code == 403
    r = await api.post("/jobs/list", {"userId": {"id": api.users["oper2"].id}})
    assert ids(r) == [theirs["jobId"]["id"]]
    r = await api.post("/jobs/list", {}, prefix="/v1")
    assert len(ids(r)) == 3 and r.json()["pageToken"] is None
    for job in r.json()["jobs"]:
        _check_job_shape(job)


async def test_list_page_size_and_tokens(api: Api) -> None:
    for i in range(5):
        await api.create_job("b1", "LIFECYCLE_UPDATE", params={"prefix": f"p{i}/"})
    r = await api.post("/jobs/list", {"pageSize": 0})
    assert len(r.json()["jobs"]) == 5 and r.json()["pageToken"] is None
    first = await api.post("/jobs/list", {"pageSize": 2, "bucketName": "b1"})
    token = first.json()["pageToken"]
    assert isinstance(token, str)
    second = await api.post("/jobs/list", {"pageSize": 2, "bucketName": "b1", "pageToken": token})
    assert second.status_code == 200
    seen = [j["jobId"]["id"] for j in first.json()["jobs"] + second.json()["jobs"]]
    assert len(set(seen)) == 4
    # tampered: every single-character change is refused
    for i in range(len(token)):
        swapped = "A" if token[i] != "A" else "B"
        forged = token[:i] + swapped + token[i + 1 :]
        r = await api.post("/jobs/list", {"pageSize": 2, "bucketName": "b1", "pageToken": forged})
        assert r.status_code == 400, i
    # reused with other filters or by another caller
    r = await api.post("/jobs/list", {"pageSize": 2, "bucketName": "b2", "pageToken": token})
    assert r.status_code == 400 and "pageToken" in r.json()["message"]
    r = await api.post("/jobs/list", {"pageSize": 2, "pageToken": token})
    assert r.status_code == 400
    r = await api.post(
        "/jobs/list", {"pageSize": 2, "bucketName": "b1", "pageToken": token}, user="oper"
    )
    assert r.status_code == 400


async def test_describe(api: Api) -> None:
    job = await api.create_job("b1", user="oper")
    job_id = job["jobId"]["id"]
    r = await api.post("/jobs/describe", {"jobId": {"id": job_id}}, user="oper")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["job"] == job
    assert d["owner"] == {"id": api.users["oper"].id, "name": "oper"}
    assert TIME_RE.match(d["createTime"])
    assert d["totals"] is None and d["plan"] is None and d["usage"] is None
    assert d["progress"] == {"succeeded": 0, "failed": 0, "skipped": 0, "bytes": 0}
    assert d["etaSeconds"] is None and d["failureReasons"] == []
    # with totals and a measured rate the ETA is remaining objects over the rate
    await api.store.update_job(
        job_id,
        totals={"objects": 100, "bytes": 1000},
        rate=10.0,
        plan={"count": {"objects": 100, "bytes": 1000}},
    )
    await _record_results(api, job_id, processed=30)
    d = (await api.post("/jobs/describe", {"jobId": {"id": job_id}}, user="oper")).json()
    assert d["totals"] == {"objects": 100, "bytes": 1000}
    assert d["plan"] == {"count": {"objects": 100, "bytes": 1000}}
    assert d["objectsPerSecond"] == 10.0
    stats = d["job"]["jobStats"]
    remaining = 100 - stats["processed"] - stats["failed"]
    assert d["etaSeconds"] == pytest.approx(remaining / 10.0)


async def _record_results(api: Api, job_id: int, processed: int) -> list[ResultRecord]:
    task = await api.store.claim_task("w1", 30)
    assert task is not None and task.job_id == job_id
    results = [
        ResultRecord(
            f"k{i:03d}",
            None,
            "count",
            [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SKIPPED][i % 3],
            "Err" if i % 3 == 1 else None,
            "boom" if i % 3 == 1 else None,
        )
        for i in range(processed)
    ]
    await api.store.checkpoint(
        task.id,
        "w1",
        key="k",
        progress=Progress(
            processed=sum(r.outcome is not Outcome.FAILED for r in results),
            failed=sum(r.outcome is Outcome.FAILED for r in results),
            skipped=sum(r.outcome is Outcome.SKIPPED for r in results),
        ),
        results=results,
    )
    return results


async def test_report_paging_and_filter(api: Api) -> None:
    job = await api.create_job("b1", user="oper")
    job_id = job["jobId"]["id"]
    results = await _record_results(api, job_id, processed=25)
    got: list[dict[str, Any]] = []
    token = None
    while True:
        body: dict[str, Any] = {"jobId": {"id": job_id}, "pageSize": 4}
        if token:
            body["pageToken"] = token
        r = await api.post("/jobs/report", body, user="oper")
        assert r.status_code == 200, r.text
        got += r.json()["results"]
        token = r.json()["pageToken"]
        if token is None:
            break
    assert [g["key"] for g in got] == [r.key for r in results]
    assert set(got[0]) == {"key", "versionId", "action", "outcome", "errorCode", "message"}
    r = await api.post("/jobs/report", {"jobId": {"id": job_id}, "outcome": "FAILED"}, user="oper")
    failed = r.json()["results"]
    assert failed and all(f["outcome"] == "FAILED" and f["errorCode"] == "Err" for f in failed)
    assert len(failed) == sum(r.outcome is Outcome.FAILED for r in results)
    # a token of the unfiltered report does not continue the filtered one
    first = await api.post("/jobs/report", {"jobId": {"id": job_id}, "pageSize": 2}, user="oper")
    r = await api.post(
        "/jobs/report",
        {
            "jobId": {"id": job_id},
            "pageSize": 2,
            "outcome": "FAILED",
            "pageToken": first.json()["pageToken"],
        },
        user="oper",
    )
    assert r.status_code == 400


async def test_bucket_usage(api: Api) -> None:
    r = await api.post("/bucket/usage", {"bucketName": "missing"}, user="view")
    assert r.status_code == 404
    r = await api.post("/bucket/usage", {"bucketName": "b1"}, user="view")
    assert r.status_code == 200
    assert r.json() == {"bucketName": "b1", "usage": None, "updateTime": None, "jobId": None}
    job = await api.create_job("b1")
    usage = {
        "currentObjects": 3,
        "currentBytes": 30,
        "noncurrentVersions": 0,
        "noncurrentBytes": 0,
        "deleteMarkers": 0,
        "multipartUploads": 1,
        "multipartParts": 2,
        "multipartBytes": 7,
        "byStorageClass": {"STANDARD": {"objects": 3, "bytes": 30}},
    }
    await api.store.put_usage("b1", usage, job["jobId"]["id"])
    r = await api.post("/bucket/usage", {"bucketName": "b1"}, user="view", prefix="/v1")
    body = r.json()
    assert body["usage"] == usage and body["jobId"] == job["jobId"]
    assert TIME_RE.match(body["updateTime"])


async def test_creating_a_job_wakes_the_worker_processes_of_the_node(api: Api) -> None:
    listener = NodeWakeups(api.settings.data_dir / "wake")  # as a worker process listens
    woken = asyncio.Event()
    listener.listen(woken.set)
    try:
        r = await api.post(
            "/jobs/create",
            {"jobType": "METRIC_RECONCILIATION", "bucketName": "b1", "jobParams": {}},
            user="oper",
        )
        assert r.status_code == 200, r.text
        async with asyncio.timeout(5):
            await woken.wait()
    finally:
        listener.close()
