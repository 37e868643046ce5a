"""Request dependencies: who is calling (bearer token) and the CSRF check (SPEC §2.1-§2.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)

from objectjobs.api.context import ApiContext, get_context
from objectjobs.errors import AuthenticationFailed, PermissionDenied
from objectjobs.models import User

CSRF_HEADER = "X-XSRF-TOKEN"
CSRF_COOKIE = "XSRF-TOKEN"
SESSION_COOKIE = "vertx-web.session"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="access_token from the token endpoint",
)
_csrf_header = APIKeyHeader(
    name=CSRF_HEADER,
    auto_error=False,
    scheme_name="csrfHeader",
    description="equal to the XSRF-TOKEN cookie from GET /mapi/v1/csrf",
)
_csrf_cookie = APIKeyCookie(name=CSRF_COOKIE, auto_error=False, scheme_name="csrfCookie")
_session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="sessionCookie")


@dataclass(frozen=True)
class Principal:
    user: User

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def permissions(self) -> tuple[str, ...]:
        return self.user.permissions

    def has(self, permission: str) -> bool:
        return permission in self.user.permissions

    def require(self, permission: str) -> None:
        if not self.has(permission):
            raise PermissionDenied(
                f"permission {permission} required", details=f"user {self.user.name}"
            )


async def current_principal(
    ctx: Annotated[ApiContext, Depends(get_context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed(
            "bearer token required", details="send Authorization: Bearer <access_token>"
        )
    claims = ctx.tokens.verify(credentials.credentials, "access")
    user = await ctx.store.get_user(claims.user_id)
    if user is None:
        raise AuthenticationFailed("the token's user no longer exists")
    return Principal(user)


async def check_csrf(
    ctx: Annotated[ApiContext, Depends(get_context)],
    header: Annotated[str | None, Depends(_csrf_header)],
    cookie: Annotated[str | None, Depends(_csrf_cookie)],
    session: Annotated[str | None, Depends(_session_cookie)],
) -> None:
    ctx.csrf.verify(header, cookie, session)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
Context = Annotated[ApiContext, Depends(get_context)]
