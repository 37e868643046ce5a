"""Listings for the S3 driver: requests signed by botocore, XML parsed here.

botocore's response parsing of a 1000-key ListObjects page costs an order of magnitude more
CPU than the request itself (see the numbers in the driver's docs). So the driver presigns
the request with its botocore client (cheap, local), sends it with aiohttp and parses the
answer with ElementTree. This also keeps versions and delete markers in the server's order,
which botocore splits into two lists.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from yarl import URL

from objectjobs.errors import StorageError
from objectjobs.storage.interface import ObjectVersion
from objectjobs.storage.s3_errors import from_code, translate

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _text(el: ET.Element, tag: str, default: str = "") -> str:
    child = el.find(_NS + tag)
    if child is None:
        child = el.find(tag)  # some servers omit the namespace
    return child.text or default if child is not None else default


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def quote_etag(etag: str | None) -> str | None:
    """ETags as S3 sends them, in double quotes (RGW leaves them off in copy results)."""
    if not etag:
        return None
    return etag if etag.startswith('"') else f'"{etag}"'


def _key_decoder(root: ET.Element) -> Callable[[str], str]:
    # botocore asks for EncodingType=url on every list (XML 1.0 cannot carry every key);
    # S3 then encodes keys and markers like a form (space as '+'), as botocore decodes them
    if _text(root, "EncodingType") == "url":
        return urllib.parse.unquote_plus
    return str


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_objects_page(body: bytes) -> tuple[list[ObjectVersion], str | None]:
    """A ListObjectsV2 page: entries and the continuation token (None when done)."""
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    out = []
    for el in root:
        if _strip_ns(el.tag) != "Contents":
            continue
        out.append(
            ObjectVersion(
                key=decode(_text(el, "Key")),
                version_id=None,
                is_latest=True,
                is_delete_marker=False,
                size=int(_text(el, "Size", "0")),
                etag=quote_etag(_text(el, "ETag")),
                last_modified=_parse_time(_text(el, "LastModified")),
                storage_class=_text(el, "StorageClass", "STANDARD"),
            )
        )
    truncated = _text(root, "IsTruncated") == "true"
    token = _text(root, "NextContinuationToken") if truncated else None
    return out, token or None


def parse_versions_page(
    body: bytes,
) -> tuple[list[ObjectVersion], tuple[str, str] | None]:
    """A ListObjectVersions page: entries in S3 order and the next (key, version) marker."""
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    rows: list[tuple[tuple[str, bool, float, int], ObjectVersion]] = []
    for i, el in enumerate(root):
        tag = _strip_ns(el.tag)
        if tag not in ("Version", "DeleteMarker"):
            continue
        marker = tag == "DeleteMarker"
        latest = _text(el, "IsLatest") == "true"
        modified = _parse_time(_text(el, "LastModified"))
        v = ObjectVersion(
            key=decode(_text(el, "Key")),
            version_id=_text(el, "VersionId", "null"),
            is_latest=latest,
            is_delete_marker=marker,
            size=0 if marker else int(_text(el, "Size", "0")),
            etag=None if marker else quote_etag(_text(el, "ETag")),
            last_modified=modified,
            storage_class="STANDARD" if marker else _text(el, "StorageClass", "STANDARD"),
        )
        rows.append(((v.key, not latest, -modified.timestamp(), i), v))
    # some servers (moto) send all versions, then all markers: restore S3's order, a key's
    # versions newest first; servers that already interleave keep their own order on ties
    rows.sort(key=lambda r: r[0])
    nxt = None
    if _text(root, "IsTruncated") == "true":
        nxt = (decode(_text(root, "NextKeyMarker")), _text(root, "NextVersionIdMarker"))
    return [v for _, v in rows], nxt


class RawLister:
    """Sends presigned list requests; retries transient failures a few times."""

    def __init__(self, client: Any, http: aiohttp.ClientSession, attempts: int) -> None:
        self._client = client
        self._http = http
        self._attempts = max(1, attempts)

    async def _fetch(self, operation: str, params: dict[str, Any]) -> bytes:
        for attempt in range(self._attempts):
            try:
                url = await self._client.generate_presigned_url(
                    operation, Params=params, ExpiresIn=900
                )
                async with self._http.get(URL(url, encoded=True)) as resp:
                    body = await resp.read()
                    if resp.status == 200:
                        return body
                    err = error_from(resp.status, body, params.get("Bucket", ""))
            except StorageError:
                raise
            except Exception as e:
                err = translate(e, f"list {params.get('Bucket', '')}")
            if not err.retryable or attempt + 1 == self._attempts:
                raise err
            await asyncio.sleep(random.uniform(0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")

    async def send_signed(
        self, method: str, url: str, access_key: str, secret_key: str, region: str
    ) -> tuple[int, bytes]:
        """One SigV4-signed request botocore has no operation for (RGW extensions)."""
        request = AWSRequest(method=method, url=url, headers={})
        S3SigV4Auth(Credentials(access_key, secret_key), "s3", region).add_auth(request)
        try:
            async with self._http.request(
                method, URL(url, encoded=True), headers=dict(request.headers.items())
            ) as resp:
                return resp.status, await resp.read()
        except Exception as e:
            raise translate(e, f"{method} {url}") from e

    async def list_objects(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": min(page_size, 1000)}
        if prefix:
            params["Prefix"] = prefix
        if start_after:
            params["StartAfter"] = start_after
        pending: list[ObjectVersion] = []
        while True:
            entries, token = parse_objects_page(await self._fetch("list_objects_v2", params))
            done = token is None
            if end_key is not None and entries and entries[-1].key > end_key:
                entries = [e for e in entries if e.key <= end_key]
                done = True
            pending.extend(entries)
            while len(pending) >= page_size:
                yield pending[:page_size]
                pending = pending[page_size:]
            if done:
                break
            params["ContinuationToken"] = token
        if pending:
            yield pending

    async def list_versions(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": min(page_size, 1000)}
        if prefix:
            params["Prefix"] = prefix
        if start_after:
            # a key marker alone resumes at the first key after it, all its versions
            params["KeyMarker"] = start_after
        pending: list[ObjectVersion] = []
        while True:
            entries, nxt = parse_versions_page(await self._fetch("list_object_versions", params))
            done = nxt is None
            if start_after and entries and entries[0].key <= start_after:
                # S3 skips every version of the marker key; some servers (moto) only its first
                entries = [e for e in entries if e.key > start_after]
            if end_key is not None and entries and entries[-1].key > end_key:
                entries = [e for e in entries if e.key <= end_key]
                done = True
            pending.extend(entries)
            while len(pending) >= page_size:
                yield pending[:page_size]
                pending = pending[page_size:]
            if done or nxt is None:
                break
            params["KeyMarker"], params["VersionIdMarker"] = nxt
            if not nxt[1]:
                params.pop("VersionIdMarker")
        if pending:
            yield pending


def error_from(status: int, body: bytes, bucket: str) -> StorageError:
    code = message = ""
    try:
        root = ET.fromstring(body)
        code = _text(root, "Code")
        message = _text(root, "Message")
    except ET.ParseError:
        pass
    return from_code(code, status, message, context=f"list {bucket}")
