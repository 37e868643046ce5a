"""Token endpoints (Keycloak-compatible and the older ``/auth/oauth``) and the CSRF cookie
endpoint (SPEC §2.1, §2.2)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import JSONResponse

from objectjobs.api.context import ApiContext
from objectjobs.api.schemas import CsrfAnswer, OAuthError, TokenAnswer
from objectjobs.api.security import CSRF_COOKIE, SESSION_COOKIE, Context
from objectjobs.auth import new_session_id, verify_password
from objectjobs.errors import AuthenticationFailed
from objectjobs.models import User

router = APIRouter(tags=["authentication"])
csrf_router = APIRouter(tags=["authentication"])

_OAUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": OAuthError, "description": "Malformed request or unsupported grant"},
    401: {"model": OAuthError, "description": "Bad credentials or refresh token"},
    404: {"model": OAuthError, "description": "Unknown realm"},
}
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

FormStr = Annotated[str | None, Form()]


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def _password_user(ctx: ApiContext, username: str, password: str) -> User | None:
    user = await ctx.store.get_user_by_name(username)
    encoded = user.password_hash if user else ctx.dummy_password_hash
    ok = await asyncio.to_thread(verify_password, password, encoded)
    return user if ok and user is not None else None


async def _grant(
    ctx: ApiContext,
    realm: str,
    grant_type: str | None,
    username: str | None,
    password: str | None,
    refresh_token: str | None,
    scope: str | None,
) -> Response:
    if realm != ctx.settings.auth.realm:
        return _oauth_error(404, "invalid_request", f"Realm does not exist: {realm}")
    user: User | None
    if grant_type == "password":
        if not username or password is None:
            return _oauth_error(400, "invalid_request", "username and password are required")
        user = await _password_user(ctx, username, password)
        if user is None:
            return _oauth_error(401, "invalid_grant", "Invalid user credentials")
    elif grant_type == "refresh_token":
        if not refresh_token:
            return _oauth_error(400, "invalid_request", "refresh_token is required")
        try:
            claims = ctx.tokens.verify(refresh_token, "refresh")
        except AuthenticationFailed as exc:
            return _oauth_error(401, "invalid_grant", f"Invalid refresh token: {exc.message}")
        user = await ctx.store.get_user(claims.user_id)
        if user is None:
            return _oauth_error(401, "invalid_grant", "Invalid refresh token: user is gone")
    elif not grant_type:
        return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
    else:
        return _oauth_error(
            400, "unsupported_grant_type", "grant_type must be password or refresh_token"
        )
    issued = ctx.tokens.issue(user)
    answer = TokenAnswer(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
        scope=scope or "profile email",
    )
    return JSONResponse(
        answer.model_dump(by_alias=True),
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@router.post(
    "/ui/auth/realms/{realm}/protocol/openid-connect/token",
    response_model=TokenAnswer,
    responses=_OAUTH_RESPONSES,
    summary="Get a token (Keycloak-compatible)",
)
async def token(
    ctx: Context,
    realm: str,
    grant_type: FormStr = None,
    client_id: FormStr = None,
    client_secret: FormStr = None,
    username: FormStr = None,
    password: FormStr = None,
    refresh_token: FormStr = None,
    scope: FormStr = None,
) -> Response:
    return await _grant(ctx, realm, grant_type, username, password, refresh_token, scope)


@router.post(
    "/auth/oauth",
    response_model=TokenAnswer,
    responses=_OAUTH_RESPONSES,
    summary="Get a token (older form, realm in the body)",
)
async def token_legacy(
    ctx: Context,
    grant_type: FormStr = None,
    client_id: FormStr = None,
    client_secret: FormStr = None,
    username: FormStr = None,
    password: FormStr = None,
    refresh_token: FormStr = None,
    scope: FormStr = None,
    realm: FormStr = None,
) -> Response:
    return await _grant(
        ctx, realm or ctx.settings.auth.realm, grant_type, username, password, refresh_token, scope
    )


@csrf_router.get("/csrf", response_model=CsrfAnswer, summary="Get CSRF cookies")
async def csrf(ctx: Context, request: Request, response: Response) -> CsrfAnswer:
    """Sets ``XSRF-TOKEN`` (readable by scripts) and ``vertx-web.session`` (HttpOnly); every
    MAPI POST must echo the former in the ``X-XSRF-TOKEN`` header."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if not _SESSION_RE.match(session):
        session = new_session_id()
    token = ctx.csrf.make(session)
    secure = request.url.scheme == "https"
    lifetime = ctx.csrf.lifetime_s
    response.set_cookie(
        CSRF_COOKIE, token, max_age=lifetime, path="/", samesite="strict", secure=secure
    )
    response.set_cookie(
        SESSION_COOKIE, session, path="/", httponly=True, samesite="strict", secure=secure
    )
    response.headers["Cache-Control"] = "no-store"
    return CsrfAnswer(token=token)
