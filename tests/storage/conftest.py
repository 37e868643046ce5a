"""The storage conformance suite's backends: one fixture, every driver.

``backend`` is parametrised over the local driver (a temp dir), the S3 driver on Ceph RGW
and the S3 driver on moto. Tests skip by capability, naming it, never by driver class.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from objectjobs.settings import StorageSettings
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import Capabilities, Storage
from objectjobs.storage.s3 import FULL_S3

# Ceph RGW Pacific answers 405 to PutBucketReplication: declared, not probed
RGW_CAPABILITIES = dataclasses.replace(FULL_S3, replication_config=False)


@dataclass
class Backend:
    name: str
    storage: Storage
    make: Callable[..., Storage]  # another driver on the same endpoint, settings overridden
    endpoint: Any = None  # tests.servers.S3Endpoint for S3 backends
    opened: list[Storage] = field(default_factory=list)

    @property
    def caps(self) -> Capabilities:
        return self.storage.capabilities

    def require(self, capability: str) -> None:
        if not getattr(self.caps, capability):
            pytest.skip(f"{self.name} driver declares {capability}=False")

    async def new_bucket(self, *, versioning: bool = False, object_lock: bool = False) -> str:
        name = f"oj-{uuid.uuid4().hex[:16]}"
        await self.storage.create_bucket(name, versioning=versioning, object_lock=object_lock)
        return name

    def boto(self, service: str = "s3") -> Any:
        import boto3

        assert self.endpoint is not None
        return boto3.client(
            service,
            endpoint_url=self.endpoint.endpoint_url,
            region_name=self.endpoint.region,
            aws_access_key_id=self.endpoint.access_key,
            aws_secret_access_key=self.endpoint.secret_key,
        )


def s3_settings(endpoint: Any, **overrides: Any) -> StorageSettings:
    values: dict[str, Any] = {
        "kind": "s3",
        "endpoint_url": endpoint.endpoint_url,
        "region": endpoint.region,
        "access_key": SecretStr(endpoint.access_key),
        "secret_key": SecretStr(endpoint.secret_key),
        "max_connections": 16,
    }
    values.update(overrides)
    return StorageSettings(**values)


@pytest.fixture(
    params=[
        "local",
        pytest.param("rgw", marks=pytest.mark.s3),
        pytest.param("moto", marks=pytest.mark.s3),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    opened: list[Storage] = []
    if request.param == "local":
        root = tmp_path / "buckets"

        def make(**_: Any) -> Storage:
            s = open_storage(StorageSettings(kind="local"), root=root)
            opened.append(s)
            return s

        endpoint = None
    else:
        endpoint = request.getfixturevalue("rgw" if request.param == "rgw" else "moto_s3")
        caps = RGW_CAPABILITIES if request.param == "rgw" else FULL_S3

        def make(**overrides: Any) -> Storage:
            s = open_storage(s3_settings(endpoint, **overrides), capabilities=caps)
            opened.append(s)
            return s

    b = Backend(request.param, make(), make, endpoint, opened)
    try:
        yield b
    finally:
        for s in opened:
            await s.close()
