"""Helpers of the BATCH_REPLICATE tests (no tests here)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import SecretStr

from objectjobs.models import JobRecord, JobType, ResultRecord
from objectjobs.settings import S3EndpointSettings, Settings, StorageSettings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore

from . import support


async def run_job(
    store: JobStore,
    owner: int,
    settings: Settings,
    storage: Storage,
    bucket: str,
    wait_s: float = 120.0,
    **params: str,
) -> JobRecord:
    return await support.run_job(
        store, owner, settings, storage, bucket, JobType.BATCH_REPLICATE, wait_s=wait_s, **params
    )


async def bodies(storage: Storage, bucket: str) -> dict[str, bytes]:
    """Every current object's body, by key."""
    out: dict[str, bytes] = {}
    async for page in storage.list_objects(bucket):
        for v in page:
            async with await storage.get(bucket, v.key) as stream:
                out[v.key] = await stream.read()
    return out


async def history(storage: Storage, bucket: str) -> dict[str, list[bytes | None]]:
    """Each key's versions oldest first: bodies, None for a delete marker."""
    out: dict[str, list[bytes | None]] = {}
    async for page in storage.list_versions(bucket):
        for v in page:
            if v.is_delete_marker:
                body = None
            else:
                async with await storage.get(bucket, v.key, v.version_id) as stream:
                    body = await stream.read()
            out.setdefault(v.key, []).insert(0, body)
    return out


async def report(store: JobStore, job_id: int) -> list[ResultRecord]:
    return [r for _, r in await store.list_results(job_id, limit=100_000)]


def s3_endpoint_settings(endpoint: Any, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "endpoint_url": endpoint.endpoint_url,
        "region": endpoint.region,
        "access_key": SecretStr(endpoint.access_key),
        "secret_key": SecretStr(endpoint.secret_key),
        "max_connections": 32,
    }
    values.update(overrides)
    return values


def with_s3(settings: Settings, endpoint: Any, **overrides: Any) -> Settings:
    """``settings`` whose job storage is the S3 ``endpoint``."""
    storage = StorageSettings(kind="s3", **s3_endpoint_settings(endpoint, **overrides))
    return settings.model_copy(update={"storage": storage})


def with_target(settings: Settings, name: str, endpoint: Any, **overrides: Any) -> Settings:
    target = S3EndpointSettings(**s3_endpoint_settings(endpoint, **overrides))
    return settings.model_copy(update={"targets": {**settings.targets, name: target}})


def bucket_name() -> str:
    return f"br-{uuid.uuid4().hex[:16]}"
