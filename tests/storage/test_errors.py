"""Error translation at the S3 driver's boundary: credentials, endpoint down, 405."""

from __future__ import annotations

import pytest

from objectjobs.errors import AccessDenied, NotSupported, StorageUnavailable
from objectjobs.storage.factory import open_storage
from objectjobs.storage.s3 import FULL_S3
from tests.servers import S3Endpoint, free_port
from tests.storage.conftest import s3_settings
from tests.storage.helpers import collect


@pytest.mark.s3
async def test_bad_credentials_are_access_denied(rgw: S3Endpoint) -> None:
    # moto accepts any credentials; RGW checks them
    bad = S3Endpoint(rgw.endpoint_url, rgw.access_key, "not-the-secret", rgw.region)
    async with open_storage(s3_settings(bad)) as s:
        with pytest.raises(AccessDenied):
            await s.list_buckets()
        with pytest.raises(AccessDenied):
            await collect(s.list_objects("any-bucket"))
    unknown = S3Endpoint(rgw.endpoint_url, "NOSUCHKEY00000000000", "x", rgw.region)
    async with open_storage(s3_settings(unknown)) as s:
        with pytest.raises(AccessDenied):
            await s.bucket_exists("any-bucket")


async def test_connection_refused_is_storage_unavailable() -> None:
    port = free_port()  # nothing listens there
    endpoint = S3Endpoint(f"http://127.0.0.1:{port}", "k", "s")
    async with open_storage(s3_settings(endpoint)) as s:
        for call in (
            lambda: s.list_buckets(),
            lambda: s.head("b", "k"),
            lambda: collect(s.list_objects("b")),
        ):
            with pytest.raises(StorageUnavailable) as info:
                await call()
            assert info.value.retryable


@pytest.mark.s3
async def test_405_from_the_server_is_not_supported(rgw: S3Endpoint) -> None:
    # a driver wrongly told RGW Pacific has replication hears 405 and says NotSupported
    async with open_storage(s3_settings(rgw), capabilities=FULL_S3) as s:
        bucket = "oj-repl-405"
        await s.create_bucket(bucket, versioning=True)
        with pytest.raises(NotSupported):
            await s.put_bucket_config(
                bucket,
                "replication",
                {
                    "Role": "arn:aws:iam::123456789012:role/r",
                    "Rules": [
                        {
                            "ID": "r",
                            "Priority": 1,
                            "Status": "Enabled",
                            "Filter": {"Prefix": ""},
                            "DeleteMarkerReplication": {"Status": "Disabled"},
                            "Destination": {"Bucket": f"arn:aws:s3:::{bucket}"},
                        }
                    ],
                },
            )
