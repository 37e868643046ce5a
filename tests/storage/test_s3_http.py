"""The S3 driver's signed requests: SigV4 exactly as botocore signs, errors translated,
transient ones retried."""

from __future__ import annotations

import calendar
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from objectjobs.errors import AccessDenied, ObjectNotFound, TransientStorageError
from objectjobs.storage.s3_http import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    S3Http,
    SigV4,
    canonical_query,
    quote_key,
)

CASES = [
    # method, key, query, headers, body
    ("PUT", "dir/obj 1", {}, {"x-amz-copy-source": "/src/dir/obj%201"}, b""),
    ("HEAD", "ünï/cödé+%&=?#key", {}, {}, b""),
    ("GET", "", {"list-type": "2", "prefix": "a b/ü", "start-after": "x=y&z"}, {}, b""),
    ("GET", "", {"versions": "", "key-marker": "k~1", "max-keys": "1000"}, {}, b""),
    (
        "PUT",
        "k",
        {},
        {
            "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-meta-note": "  two  spaces  ",
            "content-type": "text/plain",
        },
        b"body",
    ),
    ("DELETE", "k", {"versionId": "abc.DEF-123_~"}, {}, b""),
]


@pytest.mark.parametrize(("method", "key", "query", "headers", "body"), CASES)
@pytest.mark.parametrize("token", [None, "session-token"])
def test_signature_matches_botocore(
    method: str,
    key: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    token: str | None,
) -> None:
    host = "127.0.0.1:7480"
    path = "/bucket" + ("/" + quote_key(key) if key else "")
    qs = canonical_query(query)
    url = f"http://{host}{path}" + (f"?{qs}" if qs else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    request.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": not body})
    S3SigV4Auth(Credentials("AKID", "secret/key+", token), "s3", "eu-west-3").add_auth(request)
    stamp = request.headers["X-Amz-Date"]
    now = calendar.timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))

    ours = SigV4("eu-west-3").sign(
        ReadOnlyCredentials("AKID", "secret/key+", token),
        method,
        host,
        path,
        qs,
        dict(headers),
        UNSIGNED_PAYLOAD if body else EMPTY_SHA256,
        now=now,
    )

    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == request.headers["X-Amz-Content-SHA256"]


def test_canonical_query_sorts_and_escapes() -> None:
    assert canonical_query({"b": "x y", "a": "1/2", "versions": ""}) == (
        "a=1%2F2&b=x%20y&versions="
    )
    assert quote_key("a b/c~d+e") == "a%20b/c~d%2Be"


async def _serve(answers: list[tuple[int, bytes]]) -> tuple[web.AppRunner, str, list[str]]:
    """A server answering each request with the next (status, body); records the paths."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
        status, body = answers.pop(0)
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}", seen


async def _client(session: aiohttp.ClientSession, url: str) -> S3Http:
    async def creds() -> ReadOnlyCredentials:
        return ReadOnlyCredentials("AKID", "secret", None)

    return S3Http(
        session,
        endpoint_url=url,
        region="us-east-1",
        addressing_style="path",
        credentials=creds,
        attempts=3,
    )


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()


async def test_transient_errors_are_retried_then_succeed() -> None:
    runner, url, seen = await _serve(
        [(503, _error("SlowDown")), (500, _error("InternalError")), (200, b"done")]
    )
    try:
        async with aiohttp.ClientSession() as session:
            http = await _client(session, url)
            r = await http.request("GET", "b", "a key", context="get b/a key")
        assert (r.status, r.body) == (200, b"done")
        assert seen == ["/b/a%20key"] * 3
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ((404, _error("NoSuchKey")), ObjectNotFound),
        ((404, b""), ObjectNotFound),  # HEAD: no body
        ((403, _error("AccessDenied")), AccessDenied),
        ((503, _error("SlowDown")), TransientStorageError),  # still failing after 3
    ],
)
async def test_errors_are_translated(answer: tuple[int, bytes], error: type[Exception]) -> None:
    runner, url, seen = await _serve([answer] * 3)
    try:
        async with aiohttp.ClientSession() as session:
            http = await _client(session, url)
            with pytest.raises(error):
                await http.request("HEAD", "b", "k", context="head b/k")
        assert len(seen) == (3 if error is TransientStorageError else 1)
    finally:
        await runner.cleanup()
