"""The S3 driver's own SigV4 signer must sign exactly as botocore does."""

from __future__ import annotations

import calendar
import time
from types import SimpleNamespace

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from objectjobs.storage.s3_http import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
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
