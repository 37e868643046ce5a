"""Smoke tests proving each shared server fixture serves real traffic."""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
import boto3
import psycopg
import pytest
from botocore.config import Config

from tests.servers import PostgresServer, S3Endpoint


def _s3(ep: S3Endpoint) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=ep.endpoint_url,
        aws_access_key_id=ep.access_key,
        aws_secret_access_key=ep.secret_key,
        region_name=ep.region,
        config=Config(s3={"addressing_style": "path"}),
    )


def _roundtrip(ep: S3Endpoint) -> None:
    s3 = _s3(ep)
    bucket = f"smoke-{uuid.uuid4().hex[:12]}"
    body = uuid.uuid4().bytes * 100
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/obj.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="dir/obj.bin")["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")
    assert [o["Key"] for o in listed["Contents"]] == ["dir/obj.bin"]


def _to_libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_postgres_databases_are_fresh_and_separate(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    assert first.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(_to_libpq(first), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'x')")
        assert conn.execute("SELECT v FROM t WHERE id = 1").fetchone() == ("x",)
    with psycopg.connect(_to_libpq(second)) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)
    with psycopg.connect(_to_libpq(postgres_server.admin_url)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_rgw_bucket_roundtrip(rgw: S3Endpoint) -> None:
    _roundtrip(rgw)


def test_rgw_rejects_wrong_secret(rgw: S3Endpoint) -> None:
    # Proves the RGW endpoint really authenticates (moto does not), so keys are wired right.
    bad = S3Endpoint(rgw.endpoint_url, rgw.access_key, "wrong" + rgw.secret_key, rgw.region)
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied"):
        _s3(bad).list_buckets()


def test_moto_bucket_roundtrip(moto_s3: S3Endpoint) -> None:
    _roundtrip(moto_s3)


def test_two_moto_servers_are_independent(moto_s3: S3Endpoint, moto_s3_second: S3Endpoint) -> None:
    assert moto_s3.endpoint_url != moto_s3_second.endpoint_url
    bucket = f"only-first-{uuid.uuid4().hex[:12]}"
    _s3(moto_s3).create_bucket(Bucket=bucket)
    second_names = [b["Name"] for b in _s3(moto_s3_second).list_buckets()["Buckets"]]
    assert bucket not in second_names
    _roundtrip(moto_s3_second)


async def test_rabbitmq_publish_consume(rabbitmq_url: str) -> None:
    assert rabbitmq_url.startswith("amqp://guest:guest@127.0.0.1:")
    body = uuid.uuid4().bytes
    conn = await aio_pika.connect(rabbitmq_url)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(f"smoke-{uuid.uuid4().hex}", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue.name)
        message = await queue.get(timeout=10, fail=True)
        assert message is not None
        await message.ack()
        assert message.body == body
    finally:
        await conn.close()
