"""Object and multipart operations of the S3 driver (a mixin of ``S3Storage``): the
per-object ones as signed requests (``s3_http``), multipart and batch deletes on aiobotocore."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import math
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from objectjobs.errors import (
    NotSupported,
    ObjectNotFound,
    StorageError,
    UploadNotFound,
)
from objectjobs.storage.interface import (
    Body,
    Capabilities,
    DeleteResult,
    ObjectInfo,
    ObjectMeta,
    ObjectStream,
    Part,
    WriteResult,
)
from objectjobs.storage.s3_errors import translate
from objectjobs.storage.s3_headers import (
    content_md5,
    copy_source,
    info_from_headers,
    meta_headers,
    parse_tags,
    quote_etag,
    tagging_xml,
)
from objectjobs.storage.s3_http import S3Http, error_from, xml_text

CHUNK = 1024 * 1024
_COPY_PARALLEL = 4  # part-copies in flight per copied object
_PUT_PARALLEL = 2  # parts in flight per streamed put: bounds memory to ~3 chunks


def meta_to_params(meta: ObjectMeta | None) -> dict[str, Any]:
    """PutObject/CreateMultipartUpload/CopyObject parameters setting ``meta``."""
    if meta is None:
        return {}
    p: dict[str, Any] = {}
    for attr, name in (
        ("content_type", "ContentType"),
        ("content_encoding", "ContentEncoding"),
        ("content_language", "ContentLanguage"),
        ("content_disposition", "ContentDisposition"),
        ("cache_control", "CacheControl"),
        ("expires", "Expires"),
        ("storage_class", "StorageClass"),
        ("object_lock_mode", "ObjectLockMode"),
        ("object_lock_retain_until", "ObjectLockRetainUntilDate"),
    ):
        value = getattr(meta, attr)
        if value is not None:
            p[name] = value
    if meta.metadata:
        p["Metadata"] = dict(meta.metadata)
    if meta.tags:
        p["Tagging"] = urllib.parse.urlencode(meta.tags)
    if meta.legal_hold is not None:
        p["ObjectLockLegalHoldStatus"] = "ON" if meta.legal_hold else "OFF"
    return p


def _version_query(version_id: str | None, **params: str) -> dict[str, str]:
    """The query string parameters of a request on one version (the current one: None)."""
    if version_id is not None:
        params["versionId"] = version_id
    return params


class _S3Stream(ObjectStream):
    def __init__(self, resp: aiohttp.ClientResponse, info: ObjectInfo, context: str) -> None:
        self.info = info
        self._resp: aiohttp.ClientResponse | None = resp
        self._context = context

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while self._resp is not None:
                chunk = await self._resp.content.read(CHUNK)
                if not chunk:
                    break
                yield chunk
        except StorageError:
            raise
        except Exception as e:
            raise translate(e, self._context) from e
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            if resp.content.at_eof():
                resp.release()  # read to the end: the connection can serve another request
            else:
                resp.close()


async def _rechunk(source: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Re-cut a stream into pieces of exactly ``size`` bytes (the last one shorter)."""
    buf = bytearray()
    async for chunk in source:
        buf += chunk
        while len(buf) >= size:
            with memoryview(buf) as view:
                piece = bytes(view[:size])
            del buf[:size]
            yield piece
            del piece
    if buf:
        yield bytes(buf)


async def _from_bytes(data: bytes | bytearray | memoryview) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(view), CHUNK):
        yield bytes(view[i : i + CHUNK])


class S3ObjectOps:
    """Needs ``_call`` (aiobotocore), ``_http`` (signed requests), ``settings`` and
    ``capabilities`` from the driver class."""

    capabilities: Capabilities
    settings: Any

    async def _call(self, op: str, context: str, **params: Any) -> Any:
        raise NotImplementedError

    async def _http(self) -> S3Http:
        raise NotImplementedError

    async def _upload_call(self, op: str, context: str, **params: Any) -> Any:
        try:
            return await self._call(op, context, **params)
        except ObjectNotFound as e:
            # RGW answers NoSuchKey for an upload id that is gone: the upload is not found
            raise UploadNotFound(f"{context}: upload {params.get('UploadId')} not found") from e

    # --- read -----------------------------------------------------------------------------

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        ctx = f"head {bucket}/{key}"
        http = await self._http()
        query = _version_query(version_id)
        try:
            if self.capabilities.tags:
                r, tags = await asyncio.gather(
                    http.request("HEAD", bucket, key, query=query, context=ctx),
                    self._get_tags(http, bucket, key, version_id, ctx),
                )
            else:
                r = await http.request("HEAD", bucket, key, query=query, context=ctx)
                tags = None
        except NotSupported as e:
            # S3 answers 405 for a delete marker asked by version id
            raise ObjectNotFound(f"{bucket}/{key} version {version_id} is a delete marker") from e
        return info_from_headers(key, r.headers, tags)

    @staticmethod
    async def _get_tags(
        http: S3Http, bucket: str, key: str, version_id: str | None, ctx: str
    ) -> dict[str, str]:
        query = _version_query(version_id, tagging="")
        r = await http.request("GET", bucket, key, query=query, context=ctx)
        return parse_tags(r.body)

    async def get(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        byte_range: tuple[int, int] | None = None,
    ) -> ObjectStream:
        ctx = f"get {bucket}/{key}"
        query = _version_query(version_id)
        headers = {}
        if byte_range is not None:
            headers["range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        http = await self._http()
        try:
            resp = await http.request(
                "GET", bucket, key, query=query, headers=headers, context=ctx, stream=True
            )
        except NotSupported as e:
            raise ObjectNotFound(f"{bucket}/{key} version {version_id} is a delete marker") from e
        size = None
        content_range = resp.headers.get("Content-Range")
        if content_range:  # "bytes 0-9/100": the object's size is after the slash
            with contextlib.suppress(ValueError):
                size = int(content_range.rsplit("/", 1)[1])
        return _S3Stream(resp, info_from_headers(key, resp.headers, None, size), ctx)

    async def get_tags(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> dict[str, str]:
        if not self.capabilities.tags:
            raise NotSupported("tags not in this endpoint's capabilities")
        ctx = f"get tags of {bucket}/{key}"
        return await self._get_tags(await self._http(), bucket, key, version_id, ctx)

    async def put_tags(
        self, bucket: str, key: str, tags: dict[str, str], version_id: str | None = None
    ) -> None:
        if not self.capabilities.tags:
            raise NotSupported("tags not in this endpoint's capabilities")
        query = _version_query(version_id, tagging="")
        body = tagging_xml(tags)
        http = await self._http()
        await http.request(
            "PUT",
            bucket,
            key,
            query=query,
            headers={"content-md5": content_md5(body)},
            body=body,
            context=f"put tags of {bucket}/{key}",
        )

    # --- write ----------------------------------------------------------------------------

    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        meta: ObjectMeta | None = None,
        size: int | None = None,
    ) -> WriteResult:
        chunk_size: int = self.settings.multipart_chunk_size
        if isinstance(body, bytes | bytearray | memoryview):
            if len(body) <= chunk_size:
                return await self._put_single(bucket, key, bytes(body), meta)
            source: AsyncIterable[bytes] = _from_bytes(body)
        else:
            source = body
        pieces = _rechunk(source, chunk_size)
        first = await anext(pieces, b"")
        second = await anext(pieces, None)
        if second is None:
            return await self._put_single(bucket, key, first, meta)
        # hand the two pieces over in a list the callee empties: no frame keeps them alive
        read_ahead = [second, first]
        del first, second
        return await self._put_multipart(bucket, key, read_ahead, pieces, meta)

    async def _put_single(
        self, bucket: str, key: str, data: bytes, meta: ObjectMeta | None
    ) -> WriteResult:
        headers = meta_headers(meta)
        headers["content-md5"] = content_md5(data)
        http = await self._http()
        r = await http.request(
            "PUT", bucket, key, headers=headers, body=data, context=f"put {bucket}/{key}"
        )
        return WriteResult(
            etag=quote_etag(r.headers.get("ETag")), version_id=r.headers.get("x-amz-version-id")
        )

    async def _put_multipart(
        self,
        bucket: str,
        key: str,
        read_ahead: list[bytes],
        rest: AsyncIterator[bytes],
        meta: ObjectMeta | None,
    ) -> WriteResult:
        upload_id = await self.create_upload(bucket, key, meta=meta)
        in_flight: set[asyncio.Task[Part]] = set()
        done: list[Part] = []
        try:

            async def pieces() -> AsyncIterator[bytes]:
                while read_ahead:
                    yield read_ahead.pop()
                async for p in rest:
                    yield p

            number = 0
            async for data in pieces():
                number += 1
                while len(in_flight) >= _PUT_PARALLEL:
                    finished, in_flight = await asyncio.wait(
                        in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    done.extend(t.result() for t in finished)
                in_flight.add(
                    asyncio.create_task(self.upload_part(bucket, key, upload_id, number, data))
                )
                del data
            done.extend(await asyncio.gather(*in_flight))
            in_flight = set()
            done.sort(key=lambda p: p.part_number)
            result = await self.complete_upload(bucket, key, upload_id, done)
            await self._ensure_tags(bucket, key, result, meta)
            return result
        except BaseException:
            for t in in_flight:
                t.cancel()
            with contextlib.suppress(Exception):
                await self.abort_upload(bucket, key, upload_id)
            raise

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        src_version_id: str | None = None,
        meta: ObjectMeta | None = None,
        size: int | None = None,
    ) -> WriteResult:
        if not self.capabilities.server_side_copy:
            raise NotSupported("server-side copy not in this endpoint's capabilities")
        source: dict[str, Any] = {"Bucket": src_bucket, "Key": src_key}
        if src_version_id is not None:
            source["VersionId"] = src_version_id
        src_info = None
        if size is None:
            src_info = await self.head(src_bucket, src_key, src_version_id)
            size = src_info.size
        if size > self.settings.single_copy_limit:
            if meta is None:
                src_info = src_info or await self.head(src_bucket, src_key, src_version_id)
                meta = src_info.meta
            return await self._copy_multipart(source, dst_bucket, dst_key, size, meta)
        lock = None
        if meta is not None and (meta.object_lock_mode or meta.legal_hold is not None):
            # CopyObject with lock headers wants a Content-MD5 on some servers (moto), which
            # botocore cannot send for a copy: set retention and hold once the copy exists
            lock = meta
            meta = dataclasses.replace(
                meta, object_lock_mode=None, object_lock_retain_until=None, legal_hold=None
            )
        headers = {"x-amz-copy-source": copy_source(src_bucket, src_key, src_version_id)}
        if meta is not None:
            headers.update(meta_headers(meta, tags=False))
            headers["x-amz-metadata-directive"] = "REPLACE"
            if meta.tags is not None:
                headers["x-amz-tagging-directive"] = "REPLACE"
                headers["x-amz-tagging"] = urllib.parse.urlencode(meta.tags)
        ctx = f"copy {src_bucket}/{src_key} to {dst_bucket}"
        http = await self._http()
        r = await http.request("PUT", dst_bucket, dst_key, headers=headers, context=ctx)
        root = ET.fromstring(r.body)
        if root.tag.rsplit("}", 1)[-1] == "Error":
            # S3 may fail a copy after it has answered 200: the error is in the body
            raise error_from(500, r.body, ctx)
        result = WriteResult(
            etag=quote_etag(xml_text(root, "ETag")), version_id=r.headers.get("x-amz-version-id")
        )
        if meta is not None and meta.tags is not None and self.capabilities.tags:
            # RGW (Pacific) drops x-amz-tagging with TaggingDirective=REPLACE on a copy
            await self.put_tags(dst_bucket, dst_key, meta.tags, result.version_id)
        if lock is not None:
            await self._apply_lock(dst_bucket, dst_key, result.version_id, lock)
        return result

    async def _apply_lock(
        self, bucket: str, key: str, version_id: str | None, meta: ObjectMeta
    ) -> None:
        base: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            base["VersionId"] = version_id
        ctx = f"object lock of {bucket}/{key}"
        if meta.object_lock_mode and meta.object_lock_retain_until:
            await self._call(
                "put_object_retention",
                ctx,
                Retention={
                    "Mode": meta.object_lock_mode,
                    "RetainUntilDate": meta.object_lock_retain_until,
                },
                **base,
            )
        if meta.legal_hold is not None:
            await self._call(
                "put_object_legal_hold",
                ctx,
                LegalHold={"Status": "ON" if meta.legal_hold else "OFF"},
                **base,
            )

    async def _copy_multipart(
        self, source: dict[str, Any], bucket: str, key: str, size: int, meta: ObjectMeta
    ) -> WriteResult:
        part_size = max(self.settings.multipart_chunk_size, math.ceil(size / 10000))
        upload_id = await self.create_upload(bucket, key, meta=meta)
        gate = asyncio.Semaphore(_COPY_PARALLEL)
        ctx = f"part-copy {source['Bucket']}/{source['Key']} to {bucket}/{key}"

        async def one(number: int, start: int) -> Part:
            end = min(start + part_size, size) - 1
            async with gate:
                r = await self._call(
                    "upload_part_copy",
                    ctx,
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
            return Part(number, end - start + 1, quote_etag(r["CopyPartResult"]["ETag"]) or "")

        try:
            parts = await asyncio.gather(
                *(one(i + 1, off) for i, off in enumerate(range(0, size, part_size)))
            )
            result = await self.complete_upload(bucket, key, upload_id, parts)
            await self._ensure_tags(bucket, key, result, meta)
            return result
        except BaseException:
            with contextlib.suppress(Exception):
                await self.abort_upload(bucket, key, upload_id)
            raise

    async def _ensure_tags(
        self, bucket: str, key: str, result: WriteResult, meta: ObjectMeta | None
    ) -> None:
        # RGW (Pacific) ignores x-amz-tagging on CreateMultipartUpload: set them afterwards
        if meta is not None and meta.tags and self.capabilities.tags:
            await self.put_tags(bucket, key, meta.tags, result.version_id)

    # --- delete ---------------------------------------------------------------------------

    async def delete(self, bucket: str, key: str, version_id: str | None = None) -> DeleteResult:
        query = _version_query(version_id)
        http = await self._http()
        r = await http.request("DELETE", bucket, key, query=query, context=f"delete {bucket}/{key}")
        marker = r.headers.get("x-amz-delete-marker") == "true"
        return DeleteResult(
            key=key,
            version_id=version_id,
            delete_marker=marker,
            delete_marker_version_id=r.headers.get("x-amz-version-id") if marker else None,
        )

    async def delete_many(
        self, bucket: str, items: Sequence[tuple[str, str | None]]
    ) -> list[DeleteResult]:
        if not items:
            return []
        if len(items) > self.capabilities.max_batch_delete:
            raise StorageError(f"at most {self.capabilities.max_batch_delete} keys per batch")
        objects = [{"Key": k, "VersionId": v} if v is not None else {"Key": k} for k, v in items]
        r = await self._call(
            "delete_objects",
            f"delete from {bucket}",
            Bucket=bucket,
            Delete={"Objects": objects, "Quiet": False},
        )
        by_item: dict[tuple[str, str | None], DeleteResult] = {}
        for d in r.get("Deleted", []):
            vid = d.get("VersionId")
            marker = bool(d.get("DeleteMarker"))
            by_item[(d["Key"], vid)] = DeleteResult(
                key=d["Key"],
                version_id=vid,
                delete_marker=marker,
                delete_marker_version_id=d.get("DeleteMarkerVersionId") if marker else None,
            )
        for e in r.get("Errors", []):
            vid = e.get("VersionId")
            by_item[(e["Key"], vid)] = DeleteResult(
                key=e["Key"],
                version_id=vid,
                error_code=e.get("Code") or "InternalError",
                error_message=e.get("Message"),
            )
        out = []
        for k, v in items:
            res = by_item.get((k, v)) or by_item.get((k, None))
            out.append(res if res is not None else DeleteResult(key=k, version_id=v))
        return out

    # --- multipart ------------------------------------------------------------------------

    async def create_upload(self, bucket: str, key: str, *, meta: ObjectMeta | None = None) -> str:
        r = await self._call(
            "create_multipart_upload",
            f"start upload of {bucket}/{key}",
            Bucket=bucket,
            Key=key,
            **meta_to_params(meta),
        )
        return str(r["UploadId"])

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, data: bytes
    ) -> Part:
        with io.BytesIO(data) as body:
            r = await self._upload_call(
                "upload_part",
                f"upload part {part_number} of {bucket}/{key}",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=body,
                ContentMD5=content_md5(data),
            )
        return Part(part_number, len(data), quote_etag(r["ETag"]) or "", datetime.now(UTC))

    async def complete_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[Part]
    ) -> WriteResult:
        r = await self._upload_call(
            "complete_multipart_upload",
            f"complete upload of {bucket}/{key}",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": p.part_number, "ETag": p.etag} for p in parts]
            },
        )
        etag, version_id = quote_etag(r.get("ETag")), r.get("VersionId")
        if not etag or etag == '""':
            # Ceph RGW (Pacific) answers an empty ETag here; HEAD has the right one
            params: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if version_id:
                params["VersionId"] = version_id
            h = await self._call("head_object", f"head {bucket}/{key}", **params)
            etag = quote_etag(h.get("ETag"))
        return WriteResult(etag=etag, version_id=version_id)

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        with contextlib.suppress(UploadNotFound):
            await self._call(
                "abort_multipart_upload",
                f"abort upload of {bucket}/{key}",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
            )
