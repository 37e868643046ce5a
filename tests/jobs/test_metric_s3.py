"""METRIC_RECONCILIATION exact on versioned S3 buckets (Ceph RGW and moto): noncurrent
versions, delete markers, an incomplete multipart upload, and before/after/delta after the
bucket changes."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from objectjobs.models import JobState
from objectjobs.settings import S3EndpointSettings, Settings
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import Storage
from objectjobs.storage.s3 import FULL_S3
from objectjobs.store.interface import JobStore

from .support import create_job, running_workers, wait_for

pytestmark = pytest.mark.s3


@pytest.fixture
def store(sqlite_store: JobStore) -> JobStore:
    # the counting is what is under test here; the engine runs on PostgreSQL elsewhere
    return sqlite_store


@pytest.fixture(params=["rgw", "moto"])
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    endpoint: Any = request.getfixturevalue("rgw" if request.param == "rgw" else "moto_s3")
    settings = S3EndpointSettings(
        endpoint_url=endpoint.endpoint_url,
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
    )
    caps = dataclasses.replace(FULL_S3, replication_config=request.param != "rgw")
    storage = open_storage(settings, capabilities=caps)
    yield storage
    await storage.close()


async def test_versioned_bucket_counted_exactly_with_delta(
    store: JobStore, s3: Storage, settings: Settings, owner: int
) -> None:
    bucket = f"metric-{uuid.uuid4().hex[:10]}"
    await s3.create_bucket(bucket, versioning=True)
    await s3.put(bucket, "a", b"1" * 100)
    await s3.put(bucket, "a", b"2" * 250)  # the 100 bytes become noncurrent
    await s3.put(bucket, "b", b"3" * 40)
    await s3.delete(bucket, "b")  # a delete marker over a noncurrent version
    await s3.put(bucket, "c/d", b"4" * 7)
    upload = await s3.create_upload(bucket, "big")
    await s3.upload_part(bucket, "big", upload, 1, b"p" * 5000)
    await s3.upload_part(bucket, "big", upload, 2, b"q" * 300)

    job = await create_job(store, owner, bucket)
    async with running_workers(settings, store, s3):
        final = await wait_for(store, job.id)
    assert final.state is JobState.COMPLETE, final.failure_reasons
    assert (final.processed, final.failed) == (5, 0)  # 2 current, 2 noncurrent, 1 marker
    assert final.usage is not None
    after = final.usage["after"]
    assert (after["currentObjects"], after["currentBytes"]) == (2, 257)
    assert (after["noncurrentVersions"], after["noncurrentBytes"]) == (2, 140)
    assert after["deleteMarkers"] == 1
    assert (after["multipartUploads"], after["multipartParts"], after["multipartBytes"]) == (
        1,
        2,
        5300,
    )
    assert after["byStorageClass"] == {"STANDARD": {"objects": 4, "bytes": 397}}
    assert final.usage["before"] is None

    # the bucket changes: the upload completes away, c/d is deleted, a new key arrives
    await s3.abort_upload(bucket, "big", upload)
    await s3.delete(bucket, "c/d")
    await s3.put(bucket, "e", b"5" * 11)
    second = await create_job(store, owner, bucket)
    async with running_workers(settings, store, s3):
        final2 = await wait_for(store, second.id)
    assert final2.state is JobState.COMPLETE, final2.failure_reasons
    assert final2.usage is not None
    assert final2.usage["before"] == after
    delta = final2.usage["delta"]
    assert (delta["currentObjects"], delta["currentBytes"]) == (0, 11 - 7)
    assert (delta["noncurrentVersions"], delta["noncurrentBytes"]) == (1, 7)
    assert delta["deleteMarkers"] == 1
    assert (delta["multipartUploads"], delta["multipartParts"], delta["multipartBytes"]) == (
        -1,
        -2,
        -5300,
    )
    stored = await store.get_usage(bucket)
    assert stored is not None and stored.job_id == second.id
