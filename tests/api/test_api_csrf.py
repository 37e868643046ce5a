"""CSRF cookies and the check on every MAPI POST (SPEC §2.2)."""

from __future__ import annotations

import time

import pytest

from objectjobs.accounts import resolve_secret_key
from objectjobs.auth import CsrfSigner
from tests.api.conftest import Api


@pytest.mark.parametrize("path", ["/mapi/v1/csrf", "/v1/csrf"])
async def test_csrf_endpoint_sets_cookies(shared_api: Api, path: str) -> None:
    r = await shared_api.client.get(path)  # no token needed
    assert r.status_code == 200
    set_cookies = r.headers.get_list("set-cookie")
    xsrf = next(c for c in set_cookies if c.startswith("XSRF-TOKEN="))
    session = next(c for c in set_cookies if c.startswith("vertx-web.session="))
    assert "httponly" not in xsrf.lower()  # page scripts must read it
    assert "httponly" in session.lower()
    assert r.json()["token"] == r.cookies["XSRF-TOKEN"]
    shared_api.client.cookies.clear()


async def _post(api: Api, header: str | None, cookie: str | None, session: str | None) -> int:
    headers = {"Authorization": f"Bearer {await api.login('admin')}"}
    if header is not None:
        headers["X-XSRF-TOKEN"] = header
    cookies = []
    if cookie is not None:
        cookies.append(f"XSRF-TOKEN={cookie}")
    if session is not None:
        cookies.append(f"vertx-web.session={session}")
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    r = await api.client.post("/mapi/v1/jobs/list", json={}, headers=headers)
    if r.status_code != 200:
        assert set(r.json()) == {"code", "message", "details"}
    return r.status_code


async def test_csrf_negative_cases(shared_api: Api) -> None:
    token, session = await shared_api.csrf()
    signer = CsrfSigner(
        await resolve_secret_key(shared_api.store, shared_api.settings), lifetime_s=60
    )
    other_session_token = signer.make("another-session-value-123")
    expired = signer.make(session, now=time.time() - 120)
    expires, _, mac = token.partition(".")
    forged_mac = f"{expires}.{'A' * len(mac)}"
    extended = f"{int(expires) + 1000}.{mac}"  # a later expiry with the old MAC
    assert await _post(shared_api, token, token, session) == 200
    for header, cookie, sess in [
        (None, None, None),  # nothing
        (None, token, session),  # header missing
        (token, None, session),  # cookie missing
        (token, token, None),  # session cookie missing
        (token, other_session_token, session),  # header and cookie differ
        (other_session_token, other_session_token, session),  # bound to another session
        (token, token, "another-session-value-123"),
        (expired, expired, session),
        (forged_mac, forged_mac, session),
        (extended, extended, session),
        ("garbage", "garbage", session),
    ]:
        assert await _post(shared_api, header, cookie, sess) == 401, (header, cookie, sess)


async def test_csrf_lifetime_is_configurable(make_api: object) -> None:
    from collections.abc import Callable
    from typing import Any, cast

    api: Api = await cast(Callable[..., Any], make_api)(csrf_lifetime_s=10)
    token, session = await api.csrf()
    expires = int(token.partition(".")[0])
    assert 9 <= expires - time.time() <= 11
    signer = CsrfSigner(await resolve_secret_key(api.store, api.settings), lifetime_s=10)
    stale = signer.make(session, now=time.time() - 11)
    assert await _post(api, stale, stale, session) == 401


async def test_csrf_required_on_every_mapi_post(shared_api: Api) -> None:
    bearer = {"Authorization": f"Bearer {await shared_api.login('admin')}"}
    for path in [
        "jobs/list",
        "jobs/create",
        "jobs/cancel",
        "jobs/status",
        "user/info",
        "serial_number/get",
        "jobs/describe",
        "jobs/report",
        "bucket/usage",
    ]:
        for prefix in ("/mapi/v1/", "/v1/"):
            r = await shared_api.client.post(prefix + path, json={}, headers=bearer)
            assert r.status_code == 401, (path, r.text)
