"""Credentials without a web framework: password hashes, signed tokens, CSRF tokens.

Everything here is stateless given the shared secret key, so any API node can check what
any other node issued (SPEC §2.1, §2.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from objectjobs.errors import AuthenticationFailed
from objectjobs.models import User

ISSUER = "objectjobs"
TokenType = Literal["access", "refresh"]

# scrypt cost: ~16 MiB and tens of milliseconds per hash; slow for guessing, fine per login
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAXMEM = 128 * 1024 * 1024


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- passwords -------------------------------------------------------------------------------


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash, self-describing: ``scrypt$n$r$p$salt$hash`` (base64url)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${n}${r}${p}${_b64e(salt)}${_b64e(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _b64d(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_b64d(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_SCRYPT_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# --- keys ------------------------------------------------------------------------------------


def derive_key(secret: str, purpose: str) -> bytes:
    """A separate key per use of the one secret, so a token of one kind never verifies
    as another kind."""
    return hmac.new(secret.encode("utf-8"), purpose.encode("utf-8"), hashlib.sha256).digest()


# --- bearer tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    user_name: str
    typ: TokenType
    expires_at: int


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class TokenSigner:
    """Issues and verifies the built-in issuer's HS256 JWTs (access and refresh)."""

    def __init__(self, secret: str, *, access_lifetime_s: int, refresh_lifetime_s: int) -> None:
        self._key = derive_key(secret, "jwt")
        self.access_lifetime_s = access_lifetime_s
        self.refresh_lifetime_s = refresh_lifetime_s

    def _encode(self, user: User, typ: TokenType, lifetime_s: int, now: float) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": str(user.id),
            "preferred_username": user.name,
            "typ": typ,
            "iat": int(now),
            "exp": int(now) + lifetime_s,
            "jti": secrets.token_urlsafe(12),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def issue(self, user: User, *, now: float | None = None) -> IssuedTokens:
        now = time.time() if now is None else now
        return IssuedTokens(
            access_token=self._encode(user, "access", self.access_lifetime_s, now),
            expires_in=self.access_lifetime_s,
            refresh_token=self._encode(user, "refresh", self.refresh_lifetime_s, now),
            refresh_expires_in=self.refresh_lifetime_s,
        )

    def issue_one(self, user: User, typ: TokenType, lifetime_s: int, *, now: float) -> str:
        """One token with an explicit issue time (tests craft expired tokens with it)."""
        return self._encode(user, typ, lifetime_s, now)

    def verify(self, token: str, typ: TokenType) -> TokenClaims:
        """The claims of a valid unexpired token of kind ``typ``; AuthenticationFailed else."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationFailed("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("invalid token", details=str(exc)) from exc
        if claims.get("typ") != typ:
            raise AuthenticationFailed(f"not an {typ} token")
        try:
            user_id = int(claims["sub"])
        except (TypeError, ValueError) as exc:
            raise AuthenticationFailed("invalid token subject") from exc
        return TokenClaims(
            user_id=user_id,
            user_name=str(claims.get("preferred_username", "")),
            typ=typ,
            expires_at=int(claims["exp"]),
        )


# --- CSRF ------------------------------------------------------------------------------------


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


class CsrfSigner:
    """Stateless CSRF tokens: ``<expiry>.<mac>`` where the MAC covers the session cookie
    value and the expiry, so a token only works with the session it was issued for."""

    def __init__(self, secret: str, *, lifetime_s: int) -> None:
        self._key = derive_key(secret, "csrf")
        self.lifetime_s = lifetime_s

    def _mac(self, session: str, expires: int) -> str:
        msg = f"{expires}.{session}".encode()
        return _b64e(hmac.new(self._key, msg, hashlib.sha256).digest())

    def make(self, session: str, *, now: float | None = None, lifetime_s: int | None = None) -> str:
        now = time.time() if now is None else now
        expires = int(now) + (self.lifetime_s if lifetime_s is None else lifetime_s)
        return f"{expires}.{self._mac(session, expires)}"

    def verify(
        self,
        header: str | None,
        cookie: str | None,
        session: str | None,
        *,
        now: float | None = None,
    ) -> None:
        """Raise AuthenticationFailed unless header == cookie, bound to session, unexpired."""
        if not header or not cookie or not session:
            raise AuthenticationFailed(
                "CSRF token missing",
                details="send the X-XSRF-TOKEN header with the XSRF-TOKEN and "
                "vertx-web.session cookies from GET /mapi/v1/csrf",
            )
        if not hmac.compare_digest(header.encode(), cookie.encode()):
            raise AuthenticationFailed("CSRF header does not match the XSRF-TOKEN cookie")
        expires_text, _, mac = header.partition(".")
        try:
            expires = int(expires_text)
        except ValueError as exc:
            raise AuthenticationFailed("malformed CSRF token") from exc
        if not hmac.compare_digest(mac.encode(), self._mac(session, expires).encode()):
            raise AuthenticationFailed("invalid CSRF token")
        if (time.time() if now is None else now) >= expires:
            raise AuthenticationFailed("CSRF token expired")
