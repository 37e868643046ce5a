"""Signed S3 requests sent with aiohttp: the driver's data path and its listings.

botocore spends about 3.5 ms of CPU on each request (building it from the service model,
signing through ``email.message`` headers, parsing the answer): one Python process then
tops out near 250 requests/s, while the servers we target answer several times that. Its
``S3SigV4Auth`` alone costs about 1 ms a request. So the operations that run once per
object (copy, head, get, put, delete, tags) and listings are sent here: SigV4 computed
with ``hmac`` (AWS's documented algorithm; ``tests/storage/test_s3_http.py`` checks it
against botocore's signer), the signing key cached per day, answers read from headers or
parsed with ElementTree. The control plane (buckets, configurations, multipart) stays on
aiobotocore, where its cost does not matter.

Errors become ``objectjobs.errors`` through ``s3_errors``; transient ones (throttling,
timeouts, connection resets, 5xx) are retried here with jittered backoff, as botocore's
standard retry mode would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.credentials import ReadOnlyCredentials
from multidict import CIMultiDictProxy
from yarl import URL

from objectjobs.errors import StorageError
from objectjobs.storage.s3_errors import from_code, translate

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# aiohttp would add these unsigned: a default Content-Type would be stored with the
# object, and Accept-Encoding could have the body decompressed on the way
_SKIP_AUTO = frozenset({"Content-Type", "Accept-Encoding"})

CredentialSource = Callable[[], Awaitable[ReadOnlyCredentials]]


def xml_text(el: ET.Element, tag: str, default: str = "") -> str:
    child = el.find(_NS + tag)
    if child is None:
        child = el.find(tag)  # some servers omit the namespace
    return child.text or default if child is not None else default


def error_from(status: int, body: bytes, context: str) -> StorageError:
    """The error of a non-2xx answer (or of a 200 whose body is an ``<Error>``)."""
    code = message = ""
    try:
        root = ET.fromstring(body)
        code = xml_text(root, "Code")
        message = xml_text(root, "Message")
    except ET.ParseError:
        pass
    return from_code(code, status, message, context=context)


def quote_key(key: str) -> str:
    """A key as a URI path: every byte but unreserved characters and '/' escaped."""
    return urllib.parse.quote(key, safe="/~")


def _quote_param(value: str) -> str:
    return urllib.parse.quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The query string in SigV4's canonical form; sent as is, so both always agree."""
    pairs = sorted((_quote_param(k), _quote_param(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


class SigV4:
    """AWS Signature Version 4 of header-authenticated requests, for one region."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region, self.service = region, service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            k = hmac.digest(f"AWS4{secret}".encode(), day.encode(), "sha256")
            for part in (self.region, self.service, "aws4_request"):
                k = hmac.digest(k, part.encode(), "sha256")
            self._keys.clear()  # one day (and one secret) at a time is all we need
            self._keys[(secret, day)] = cached = k
        return cached

    def sign(
        self,
        creds: ReadOnlyCredentials,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: dict[str, str],
        payload_hash: str,
        now: float | None = None,
    ) -> dict[str, str]:
        """``headers`` (lower-case names) plus the date, payload hash and Authorization;
        every header given is signed. ``path`` and ``query`` are already encoded."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        out = dict(headers)
        out["host"] = host
        out["x-amz-date"] = stamp
        out["x-amz-content-sha256"] = payload_hash
        if creds.token:
            out["x-amz-security-token"] = creds.token
        names = sorted(out)
        canonical_headers = "".join(f"{n}:{' '.join(out[n].split())}\n" for n in names)
        signed = ";".join(names)
        request = "\n".join((method, path, query, canonical_headers, signed, payload_hash)).encode()
        day = stamp[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(request).hexdigest()}"
        signature = hmac.digest(
            self._signing_key(creds.secret_key, day), to_sign.encode(), "sha256"
        ).hex()
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        del out["host"]  # aiohttp sends the same Host itself
        return out


@dataclass(frozen=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class S3Http:
    """Sends signed requests to one endpoint over one aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint_url: str | None,
        region: str,
        addressing_style: str,
        credentials: CredentialSource,
        attempts: int,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._signer = SigV4(region)
        self._attempts = max(1, attempts)
        base = urllib.parse.urlsplit(endpoint_url or f"https://s3.{region}.amazonaws.com")
        self._scheme = base.scheme
        self._netloc = base.netloc
        self._base_path = base.path.rstrip("/")
        self._virtual = addressing_style == "virtual"

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        """(host, encoded path) of a bucket or object."""
        if self._virtual and bucket and "." not in bucket:
            path = f"{self._base_path}/{quote_key(key)}"
            return f"{bucket}.{self._netloc}", path
        path = f"{self._base_path}/{quote_key(bucket)}" if bucket else self._base_path or "/"
        if key:
            path += "/" + quote_key(key)
        return self._netloc, path

    async def open(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> aiohttp.ClientResponse:
        """One attempt; the caller reads and releases the response."""
        host, path = self._target(bucket, key)
        qs = canonical_query(query) if query else ""
        creds = await self._credentials()
        signed = self._signer.sign(
            creds,
            method,
            host,
            path,
            qs,
            {k.lower(): v for k, v in (headers or {}).items()},
            UNSIGNED_PAYLOAD if body else EMPTY_SHA256,
        )
        url = f"{self._scheme}://{host}{path}" + (f"?{qs}" if qs else "")
        return await self._session.request(
            method,
            URL(url, encoded=True),
            headers=signed,
            data=body or None,
            skip_auto_headers=_SKIP_AUTO,
        )

    async def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        *,
        context: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        stream: bool = False,
    ) -> Any:
        """A request retried while its failure is transient. Returns a :class:`Response`
        (the body read), or with ``stream`` the open ``aiohttp.ClientResponse``."""
        for attempt in range(self._attempts):
            try:
                resp = await self.open(method, bucket, key, query=query, headers=headers, body=body)
                try:
                    if resp.status < 300 and stream:
                        return resp
                    data = await resp.read()
                finally:
                    if not (resp.status < 300 and stream):
                        resp.release()
                if resp.status < 300:
                    return Response(resp.status, resp.headers, data)
                err = error_from(resp.status, data, context)
            except StorageError:
                raise
            except Exception as e:
                err = translate(e, context)
            if not err.retryable or attempt + 1 == self._attempts:
                raise err
            await asyncio.sleep(random.uniform(0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")
