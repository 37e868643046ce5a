"""Token endpoints, bearer checks, accounts bootstrap (SPEC §2.1)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from objectjobs.accounts import ensure_admin, resolve_secret_key, resolve_serial_number
from objectjobs.auth import TokenSigner, hash_password, verify_password
from objectjobs.errors import AuthenticationFailed
from objectjobs.models import ROLES
from objectjobs.store.sql import SqlJobStore
from tests.api.conftest import ADMIN_PASSWORD, TOKEN_PATH, Api, make_settings


async def _secret(api: Api) -> str:
    return await resolve_secret_key(api.store, api.settings)


# --- passwords -------------------------------------------------------------------------------


def test_password_hash_is_salted_and_verifies() -> None:
    a, b = hash_password("pw", n=2**8), hash_password("pw", n=2**8)
    assert a != b and a.startswith("scrypt$256$8$1$")
    assert verify_password("pw", a) and verify_password("pw", b)
    assert not verify_password("pW", a)
    assert not verify_password("pw", "scrypt$nonsense")
    assert not verify_password("pw", "bcrypt$1$2$3$4$5")


# --- token endpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
async def test_password_grant_answers_oauth_json(api: Api, legacy: bool) -> None:
    form = {
        "grant_type": "password",
        "client_id": "vsp-object-external-client",
        "username": "admin",
        "password": ADMIN_PASSWORD,
    }
    if legacy:
        r = await api.client.post("/auth/oauth", data={**form, "realm": "vsp-object"})
    else:
        r = await api.client.post(TOKEN_PATH, data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == api.settings.auth.token_lifetime_s
    assert body["refresh_expires_in"] == api.settings.auth.refresh_lifetime_s
    assert isinstance(body["scope"], str)
    headers = await api.headers(None)
    headers["Authorization"] = f"Bearer {body['access_token']}"
    info = await api.client.post("/mapi/v1/user/info", headers=headers)
    assert info.status_code == 200
    assert info.json()["displayName"] == "admin"


async def test_refresh_grant_issues_new_working_tokens(api: Api) -> None:
    r = await api.client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "c",
            "username": "oper",
            "password": "oper-pw",
        },
    )
    refresh = r.json()["refresh_token"]
    r2 = await api.client.post(
        TOKEN_PATH, data={"grant_type": "refresh_token", "client_id": "c", "refresh_token": refresh}
    )
    assert r2.status_code == 200, r2.text
    headers = await api.headers(None)
    headers["Authorization"] = f"Bearer {r2.json()['access_token']}"
    info = await api.client.post("/v1/user/info", headers=headers)
    assert info.json()["userId"] == {"id": api.users["oper"].id}
    # an access token is not a refresh token, and a refresh token is not a bearer token
    r3 = await api.client.post(
        TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": r.json()["access_token"]}
    )
    assert r3.status_code == 401 and r3.json()["error"] == "invalid_grant"
    headers["Authorization"] = f"Bearer {refresh}"
    assert (await api.client.post("/v1/user/info", headers=headers)).status_code == 401


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "password", "username": "admin", "password": "wrong"},
            401,
            "invalid_grant",
        ),
        ({"grant_type": "password", "username": "nobody", "password": "x"}, 401, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "garbage"}, 401, "invalid_grant"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"username": "admin", "password": ADMIN_PASSWORD}, 400, "invalid_request"),
        ({"grant_type": "password", "username": "admin"}, 400, "invalid_request"),
    ],
)
async def test_token_errors_use_oauth_body(
    api: Api, form: dict[str, str], status: int, error: str
) -> None:
    for r in (
        await api.client.post(TOKEN_PATH, data=form),
        await api.client.post("/auth/oauth", data=form),
    ):
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error", "error_description"}
        assert r.json()["error"] == error


async def test_unknown_realm_is_404(api: Api) -> None:
    r = await api.client.post(
        "/ui/auth/realms/other/protocol/openid-connect/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
    )
    assert r.status_code == 404 and set(r.json()) == {"error", "error_description"}


# --- bearer tokens on MAPI -------------------------------------------------------------------


async def _bearer_status(api: Api, token: str | None, scheme: str = "Bearer") -> Any:
    headers = await api.headers(None)
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return await api.client.post("/mapi/v1/jobs/list", json={}, headers=headers)


async def test_missing_garbage_forged_expired_bearer_are_401(api: Api) -> None:
    user = api.users["oper"]
    secret = await _secret(api)
    expired = TokenSigner(secret, access_lifetime_s=60, refresh_lifetime_s=60).issue_one(
        user, "access", 60, now=time.time() - 120
    )
    forged = (
        TokenSigner("another secret key entirely...", access_lifetime_s=60, refresh_lifetime_s=60)
        .issue(user)
        .access_token
    )
    valid = await api.login("oper")
    for token, scheme in [
        (None, ""),
        ("garbage", "Bearer"),
        (expired, "Bearer"),
        (forged, "Bearer"),
        (valid, "Basic"),
        (valid[:-3], "Bearer"),
    ]:
        r = await _bearer_status(api, token, scheme)
        assert r.status_code == 401, (token, r.text)
        assert set(r.json()) == {"code", "message", "details"}
    assert (await _bearer_status(api, valid)).status_code == 200


def test_token_signer_rejects_expired_and_wrong_type() -> None:
    from datetime import UTC, datetime

    from objectjobs.models import User

    user = User(7, "u", "viewer", "", datetime.now(UTC))
    signer = TokenSigner("k" * 40, access_lifetime_s=60, refresh_lifetime_s=60)
    assert signer.verify(signer.issue(user).access_token, "access").user_id == 7
    with pytest.raises(AuthenticationFailed):
        signer.verify(signer.issue(user).access_token, "refresh")
    with pytest.raises(AuthenticationFailed, match="expired"):
        signer.verify(signer.issue_one(user, "access", 10, now=time.time() - 11), "access")


async def test_user_info_and_serial_number(api: Api) -> None:
    for prefix in ("/mapi/v1", "/v1"):
        r = await api.post("/user/info", user="view", prefix=prefix)
        assert r.status_code == 200
        assert r.json() == {
            "displayName": "view",
            "roles": list(ROLES["viewer"]),
            "userId": {"id": api.users["view"].id},
        }
        r = await api.post("/serial_number/get", {}, user="view", prefix=prefix)
        assert r.status_code == 200
        assert r.json() == {"value": await resolve_serial_number(api.store)}
    admin = await api.post("/user/info", {})
    assert set(admin.json()["roles"]) == set(ROLES["admin"])


# --- accounts bootstrap ----------------------------------------------------------------------


async def test_ensure_admin_generates_password_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.auth.admin_password = None
    store = SqlJobStore(settings.database_url)
    await store.migrate()
    try:
        password = await ensure_admin(store, settings)
        assert password
        assert await ensure_admin(store, settings) is None
        admin = await store.get_user_by_name("admin")
        assert admin is not None and admin.role == "admin"
        assert verify_password(password, admin.password_hash)
        assert password not in admin.password_hash
        # the secret key is generated once and shared through the store
        assert await resolve_secret_key(store, settings) == await resolve_secret_key(
            store, settings
        )
    finally:
        await store.close()


async def test_configured_admin_password_and_secret(make_api: Callable[..., Any]) -> None:
    api: Api = await make_api(secret_key="configured-secret-key-0123456789abcdef")
    assert api.app.state.generated_admin_password is None
    token = await api.login("admin")
    TokenSigner(
        "configured-secret-key-0123456789abcdef", access_lifetime_s=1, refresh_lifetime_s=1
    ).verify(token, "access")
