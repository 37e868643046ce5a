"""The S3 driver: any S3 endpoint. Per-object operations and listings go through
``s3_http`` (signed requests on aiohttp, cheap per request); the control plane (buckets,
configurations, multipart, batch deletes) through aiobotocore.

Capabilities are declared, not probed: the defaults describe a full S3; a server that lacks
something (Ceph RGW Pacific has no replication configuration) is described by passing
``capabilities``; a 405/NotImplemented answer becomes ``NotSupported`` anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.credentials import Credentials, ReadOnlyCredentials
from pydantic import SecretStr

from objectjobs.errors import (
    ConfigurationNotFound,
    NotSupported,
    ObjectNotFound,
    StorageError,
)
from objectjobs.storage.interface import (
    Capabilities,
    ConfigKind,
    MultipartUpload,
    ObjectVersion,
    Part,
    Storage,
    VersioningStatus,
)
from objectjobs.storage.key_splits import split_keys
from objectjobs.storage.s3_errors import translate
from objectjobs.storage.s3_headers import quote_etag
from objectjobs.storage.s3_http import CredentialSource, S3Http
from objectjobs.storage.s3_listing import RawLister
from objectjobs.storage.s3_objects import S3ObjectOps

T = TypeVar("T")
CHUNK = 1024 * 1024
_NOTIFICATION_KEYS = (
    "TopicConfigurations",
    "QueueConfigurations",
    "LambdaFunctionConfigurations",
    "EventBridgeConfiguration",
)
FULL_S3 = Capabilities(
    versioning=True,
    object_lock=True,
    server_side_copy=True,
    multipart=True,
    tags=True,
    storage_classes=True,
    batch_delete=True,
    lifecycle_config=True,
    replication_config=True,
    notification_config=True,
)


class S3Settings(Protocol):
    """What the driver reads from ``S3EndpointSettings`` (or ``StorageSettings``)."""

    endpoint_url: str | None
    region: str
    access_key: SecretStr | None
    secret_key: SecretStr | None
    addressing_style: Literal["path", "virtual"]
    single_copy_limit: int
    multipart_chunk_size: int
    max_connections: int


class S3Storage(S3ObjectOps, Storage):
    driver = "s3"

    def __init__(
        self,
        settings: S3Settings,
        *,
        capabilities: Capabilities | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.capabilities = capabilities or FULL_S3
        access = settings.access_key.get_secret_value() if settings.access_key else ""
        self.endpoint_id = f"s3:{settings.endpoint_url or 'aws:' + settings.region}#{access}"
        self._max_attempts = max_attempts
        self._config = AioConfig(
            region_name=settings.region,
            s3={"addressing_style": settings.addressing_style},
            max_pool_connections=settings.max_connections,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lister: RawLister | None = None
        self._raw_http: S3Http | None = None
        self._lock = asyncio.Lock()

    async def _c(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    await self._open()
        return self._client

    async def _open(self) -> None:
        stack = contextlib.AsyncExitStack()
        s = self.settings
        session = get_session()
        access = s.access_key.get_secret_value() if s.access_key else None
        secret = s.secret_key.get_secret_value() if s.secret_key else None
        client = await stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=s.endpoint_url,
                region_name=s.region,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                config=self._config,
            )
        )
        credentials: CredentialSource
        if access and secret:
            frozen = ReadOnlyCredentials(access, secret, None)

            async def static() -> ReadOnlyCredentials:
                return frozen

            credentials = static
        else:
            # the environment's chain (env, profile, instance role), refreshed by botocore
            found = await session.get_credentials()
            if found is None:
                found = Credentials("", "")

            async def chain() -> ReadOnlyCredentials:
                frozen: ReadOnlyCredentials = await found.get_frozen_credentials()
                return frozen

            credentials = chain
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=s.max_connections),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=self._config.connect_timeout,
                    sock_read=self._config.read_timeout,
                ),
                auto_decompress=False,  # bodies are copied as stored (Content-Encoding kept)
            )
        )
        self._raw_http = S3Http(
            http,
            endpoint_url=s.endpoint_url,
            region=s.region,
            addressing_style=s.addressing_style,
            credentials=credentials,
            attempts=self._max_attempts,
        )
        self._lister = RawLister(self._raw_http)
        self._stack, self._client = stack, client

    async def _http(self) -> S3Http:
        await self._c()
        assert self._raw_http is not None
        return self._raw_http

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self._client = self._lister = self._raw_http = None
        if stack is not None:
            await stack.aclose()

    async def _call(self, op: str, context: str, **params: Any) -> Any:
        client = await self._c()
        try:
            result = await getattr(client, op)(**params)
        except Exception as e:
            raise translate(e, context) from e
        result.pop("ResponseMetadata", None)
        return result

    # --- buckets --------------------------------------------------------------------------

    async def bucket_exists(self, bucket: str) -> bool:
        try:
            await self._call("head_bucket", bucket, Bucket=bucket)
        except ObjectNotFound:  # HEAD 404 without a body
            return False
        except StorageError as e:
            if e.code == "NoSuchBucket":
                return False
            raise
        return True

    async def list_buckets(self) -> list[str]:
        r = await self._call("list_buckets", "list buckets")
        return sorted(b["Name"] for b in r.get("Buckets", []))

    async def create_bucket(
        self, bucket: str, *, versioning: bool = False, object_lock: bool = False
    ) -> None:
        if (versioning and not self.capabilities.versioning) or (
            object_lock and not self.capabilities.object_lock
        ):
            raise NotSupported("versioning/object lock not in this endpoint's capabilities")
        params: dict[str, Any] = {"Bucket": bucket}
        if self.settings.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
        if object_lock:
            params["ObjectLockEnabledForBucket"] = True
        try:
            await self._call("create_bucket", f"create {bucket}", **params)
        except StorageError as e:
            if e.code != "BucketAlreadyOwnedByYou":
                raise
        if versioning:
            await self.put_versioning(bucket, "Enabled")

    async def get_versioning(self, bucket: str) -> VersioningStatus:
        r = await self._call("get_bucket_versioning", bucket, Bucket=bucket)
        status = r.get("Status")
        return status if status in ("Enabled", "Suspended") else None

    async def put_versioning(self, bucket: str, status: Literal["Enabled", "Suspended"]) -> None:
        if not self.capabilities.versioning:
            raise NotSupported("versioning not in this endpoint's capabilities")
        await self._call(
            "put_bucket_versioning",
            bucket,
            Bucket=bucket,
            VersioningConfiguration={"Status": status},
        )

    def _check_config(self, kind: ConfigKind) -> None:
        enabled = {
            "lifecycle": self.capabilities.lifecycle_config,
            "replication": self.capabilities.replication_config,
            "notification": self.capabilities.notification_config,
        }
        if kind not in enabled:
            raise StorageError(f"unknown configuration kind {kind!r}")
        if not enabled[kind]:
            raise NotSupported(f"{kind} configuration not in this endpoint's capabilities")

    async def get_bucket_config(self, bucket: str, kind: ConfigKind) -> dict[str, Any]:
        self._check_config(kind)
        ctx = f"{kind} configuration of {bucket}"
        if kind == "lifecycle":
            r = await self._call("get_bucket_lifecycle_configuration", ctx, Bucket=bucket)
            return {"Rules": r.get("Rules", [])}
        if kind == "replication":
            r = await self._call("get_bucket_replication", ctx, Bucket=bucket)
            return dict(r["ReplicationConfiguration"])
        r = await self._call("get_bucket_notification_configuration", ctx, Bucket=bucket)
        config = {k: r[k] for k in _NOTIFICATION_KEYS if r.get(k)}
        if not config:
            raise ConfigurationNotFound(f"bucket {bucket!r} has no notification configuration")
        return config

    async def put_bucket_config(
        self, bucket: str, kind: ConfigKind, config: dict[str, Any]
    ) -> None:
        self._check_config(kind)
        ctx = f"put {kind} configuration of {bucket}"
        if kind == "lifecycle":
            await self._call(
                "put_bucket_lifecycle_configuration",
                ctx,
                Bucket=bucket,
                LifecycleConfiguration={"Rules": config["Rules"]},
            )
        elif kind == "replication":
            await self._call(
                "put_bucket_replication", ctx, Bucket=bucket, ReplicationConfiguration=config
            )
        else:
            await self._call(
                "put_bucket_notification_configuration",
                ctx,
                Bucket=bucket,
                NotificationConfiguration={k: config[k] for k in _NOTIFICATION_KEYS if k in config},
            )

    async def delete_bucket_config(self, bucket: str, kind: ConfigKind) -> None:
        self._check_config(kind)
        ctx = f"delete {kind} configuration of {bucket}"
        try:
            if kind == "lifecycle":
                await self._call("delete_bucket_lifecycle", ctx, Bucket=bucket)
            elif kind == "replication":
                await self._call("delete_bucket_replication", ctx, Bucket=bucket)
            else:
                await self._delete_notifications(bucket, ctx)
        except ConfigurationNotFound:
            pass

    async def _delete_notifications(self, bucket: str, ctx: str) -> None:
        try:
            await self._call(
                "put_bucket_notification_configuration",
                ctx,
                Bucket=bucket,
                NotificationConfiguration={},
            )
            return
        except StorageError as e:
            if e.code != "MalformedXML":
                raise
        # Ceph RGW refuses an empty configuration; it deletes with its own
        # DELETE /<bucket>?notification, which botocore has no operation for
        http = await self._http()
        await http.request("DELETE", bucket, query={"notification": ""}, context=ctx)

    # --- listing --------------------------------------------------------------------------

    async def _raw(self) -> RawLister:
        await self._c()
        assert self._lister is not None
        return self._lister

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        lister = await self._raw()
        async for page in lister.list_objects(bucket, prefix, start_after, end_key, page_size):
            yield page

    async def list_versions(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        end_key: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[list[ObjectVersion]]:
        lister = await self._raw()
        async for page in lister.list_versions(bucket, prefix, start_after, end_key, page_size):
            yield page

    async def key_splits(
        self, bucket: str, *, prefix: str = "", start_after: str = "", parts: int = 2
    ) -> list[str]:
        # one page of one level: a level of more than a page is not cheap to read
        lister = await self._raw()
        return await split_keys(functools.partial(lister.level, bucket), prefix, start_after, parts)

    async def list_uploads(
        self, bucket: str, *, prefix: str = ""
    ) -> AsyncIterator[list[MultipartUpload]]:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            r = await self._call("list_multipart_uploads", f"list uploads of {bucket}", **params)
            page = [
                MultipartUpload(
                    key=u["Key"],
                    upload_id=u["UploadId"],
                    initiated=u["Initiated"],
                    storage_class=u.get("StorageClass") or "STANDARD",
                )
                for u in r.get("Uploads", [])
            ]
            if page:
                yield page
            if not r.get("IsTruncated"):
                return
            params["KeyMarker"] = r.get("NextKeyMarker", "")
            params["UploadIdMarker"] = r.get("NextUploadIdMarker", "")

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> AsyncIterator[list[Part]]:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            r = await self._upload_call("list_parts", f"list parts of {bucket}/{key}", **params)
            page = [
                Part(p["PartNumber"], p["Size"], quote_etag(p["ETag"]) or "", p.get("LastModified"))
                for p in r.get("Parts", [])
            ]
            if page:
                yield page
            if not r.get("IsTruncated"):
                return
            params["PartNumberMarker"] = r["NextPartNumberMarker"]
