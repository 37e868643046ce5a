"""Conformance: bucket configurations (lifecycle, notification, replication)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from objectjobs.errors import BucketNotFound, ConfigurationNotFound
from tests.storage.conftest import Backend

LIFECYCLE = {
    "Rules": [
        {
            "ID": "expire-logs",
            "Status": "Enabled",
            "Filter": {"Prefix": "logs/"},
            "Expiration": {"Days": 30},
        },
        {
            "ID": "old-versions",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2},
        },
    ]
}


def topic_arn(backend: Backend) -> str:
    """A notification destination the server accepts (RGW and moto want a real topic)."""
    if backend.endpoint is None:
        return "arn:aws:sns:us-east-1:000000000000:objectjobs-test"
    sns = backend.boto("sns")
    attrs = {"push-endpoint": "http://127.0.0.1:9/"} if backend.name == "rgw" else {}
    return str(sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}", Attributes=attrs)["TopicArn"])


async def test_lifecycle(backend: Backend) -> None:
    backend.require("lifecycle_config")
    s = backend.storage
    bucket = await backend.new_bucket()
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(bucket, "lifecycle")
    await s.put_bucket_config(bucket, "lifecycle", LIFECYCLE)
    got = await s.get_bucket_config(bucket, "lifecycle")
    rules = {r["ID"]: r for r in got["Rules"]}
    assert set(rules) == {"expire-logs", "old-versions"}
    assert rules["expire-logs"]["Expiration"] == {"Days": 30}
    assert rules["expire-logs"]["Filter"] == {"Prefix": "logs/"}
    assert rules["old-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    assert rules["old-versions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}
    await s.delete_bucket_config(bucket, "lifecycle")
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(bucket, "lifecycle")
    await s.delete_bucket_config(bucket, "lifecycle")  # deleting nothing is fine


async def test_notification(backend: Backend) -> None:
    backend.require("notification_config")
    s = backend.storage
    bucket = await backend.new_bucket()
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(bucket, "notification")
    arn = topic_arn(backend)
    config: dict[str, Any] = {
        "TopicConfigurations": [
            {
                "Id": "created",
                "TopicArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}},
            }
        ]
    }
    await s.put_bucket_config(bucket, "notification", config)
    got = await s.get_bucket_config(bucket, "notification")
    assert "ResponseMetadata" not in got
    [topic] = got["TopicConfigurations"]
    assert (topic["Id"], topic["TopicArn"], topic["Events"]) == (
        "created",
        arn,
        ["s3:ObjectCreated:*"],
    )
    rules = topic["Filter"]["Key"]["FilterRules"]
    assert [(r["Name"].lower(), r["Value"]) for r in rules] == [("prefix", "in/")]
    await s.delete_bucket_config(bucket, "notification")
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(bucket, "notification")


async def test_replication(backend: Backend) -> None:
    backend.require("replication_config")
    backend.require("versioning")
    s = backend.storage
    src = await backend.new_bucket(versioning=True)
    dst = await backend.new_bucket(versioning=True)
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(src, "replication")
    config = {
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [
            {
                "ID": "all",
                "Priority": 1,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "Destination": {"Bucket": f"arn:aws:s3:::{dst}"},
            }
        ],
    }
    await s.put_bucket_config(src, "replication", config)
    got = await s.get_bucket_config(src, "replication")
    assert got["Role"] == config["Role"]
    [rule] = got["Rules"]
    assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{dst}"
    assert rule["Status"] == "Enabled" and rule["Filter"] == {"Prefix": ""}
    await s.delete_bucket_config(src, "replication")
    with pytest.raises(ConfigurationNotFound):
        await s.get_bucket_config(src, "replication")


async def test_config_of_missing_bucket(backend: Backend) -> None:
    backend.require("lifecycle_config")
    with pytest.raises(BucketNotFound):
        await backend.storage.get_bucket_config(f"oj-missing-{uuid.uuid4().hex[:8]}", "lifecycle")
