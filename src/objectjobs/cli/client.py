"""A MAPI client, speaking the wire contract (SPEC §2) like any third-party client would.

Token from the Keycloak-compatible endpoint, CSRF cookie echoed in ``X-XSRF-TOKEN``, then
``POST /mapi/v1/<operation>`` with JSON. Errors come back as the library's exceptions
carrying the API's own ``message``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from objectjobs.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    ObjectJobsError,
    PermissionDenied,
    StorageUnavailable,
)

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_REALM = "vsp-object"
CLIENT_ID = "vsp-object-external-client"
CSRF_COOKIE = "XSRF-TOKEN"
SESSION_COOKIE = "vertx-web.session"
CSRF_HEADER = "X-XSRF-TOKEN"

_STATUS_ERRORS: dict[int, type[ObjectJobsError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    503: StorageUnavailable,
}


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


# --- saved logins ---------------------------------------------------------------------------


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "objectjobs" / "credentials.json"


class CredentialStore:
    """Refresh tokens per API URL in a 0600 JSON file; passwords are never stored."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or credentials_path()

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ObjectJobsError(f"cannot read saved logins {self.path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def get(self, url: str) -> dict[str, str] | None:
        return self._load().get(normalize_url(url))

    def save(self, url: str, user: str, refresh_token: str) -> None:
        data = self._load()
        data[normalize_url(url)] = {"user": user, "refresh_token": refresh_token}
        self._write(data)

    def remove(self, url: str) -> bool:
        data = self._load()
        if data.pop(normalize_url(url), None) is None:
            return False
        self._write(data)
        return True


@dataclass(frozen=True)
class Credentials:
    """Either a user name and password, or a saved refresh token."""

    user: str | None = None
    password: str | None = None
    refresh_token: str | None = None


# --- the client -------------------------------------------------------------------------------


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        # MAPI errors say "message"; OAuth errors say "error_description"/"error"
        for key in ("message", "error_description", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    text = response.text.strip().splitlines()
    return text[0] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    cls = _STATUS_ERRORS.get(response.status_code, ObjectJobsError)
    raise cls(_error_message(response))


class ApiClient:
    """One API session. Call :meth:`call` with a MAPI operation name and a body."""

    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        verify: bool = True,
        timeout: float = 30.0,
        realm: str = DEFAULT_REALM,
        on_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.realm = realm
        self._credentials = credentials
        self._on_refresh_token = on_refresh_token
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout)
        self._access: str | None = None
        self._refresh: str | None = credentials.refresh_token
        self._csrf: tuple[str, str] | None = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            reason = str(exc) or type(exc).__name__
            if "CERTIFICATE_VERIFY_FAILED" in reason:
                raise ObjectJobsError(
                    f"cannot verify the TLS certificate of {self.url} "
                    "(use --insecure for a self-signed one)"
                ) from exc
            raise ObjectJobsError(f"cannot reach {self.url}: {reason}") from exc
        except httpx.TimeoutException as exc:
            raise ObjectJobsError(f"{self.url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ObjectJobsError(f"request to {self.url} failed: {exc}") from exc

    # --- tokens -------------------------------------------------------------------------

    @property
    def token_path(self) -> str:
        return f"/ui/auth/realms/{self.realm}/protocol/openid-connect/token"

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        response = self._send("POST", self.token_path, data={"client_id": CLIENT_ID, **form})
        if response.status_code in (400, 401):
            raise AuthenticationFailed(_error_message(response))
        _raise_for(response)
        answer: dict[str, Any] = response.json()
        self._access = str(answer["access_token"])
        if answer.get("refresh_token"):
            self._refresh = str(answer["refresh_token"])
        return answer

    def password_login(self, user: str, password: str) -> dict[str, Any]:
        return self._token({"grant_type": "password", "username": user, "password": password})

    def _authenticate(self) -> None:
        creds = self._credentials
        if self._refresh:
            try:
                answer = self._token(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh}
                )
            except AuthenticationFailed:
                if not (creds.user and creds.password):
                    raise AuthenticationFailed(
                        "the saved login has expired or was revoked; run `objectjobs login`"
                    ) from None
            else:
                if self._on_refresh_token and answer.get("refresh_token"):
                    self._on_refresh_token(str(answer["refresh_token"]))
                return
        if creds.user and creds.password:
            self.password_login(creds.user, creds.password)
            return
        raise AuthenticationFailed(
            "no credentials: set OBJECTJOBS_USER and OBJECTJOBS_PASSWORD, or run `objectjobs login`"
        )

    def _fetch_csrf(self) -> tuple[str, str]:
        response = self._send("GET", "/mapi/v1/csrf")
        _raise_for(response)
        token = response.cookies.get(CSRF_COOKIE)
        session = response.cookies.get(SESSION_COOKIE)
        if not token or not session:
            raise ObjectJobsError(f"{self.url} did not set the CSRF cookies")
        return token, session

    # --- operations -----------------------------------------------------------------------

    def call(
        self,
        operation: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST ``/mapi/v1/<operation>``; re-authenticates once when a token or the CSRF
        token expired in a long session (``watch``)."""
        for attempt in (1, 2):
            if self._access is None:
                self._authenticate()
            if self._csrf is None:
                self._csrf = self._fetch_csrf()
            token, session = self._csrf
            response = self._send(
                "POST",
                f"/mapi/v1/{operation}",
                json=body or {},
                headers={
                    **(headers or {}),
                    "Authorization": f"Bearer {self._access}",
                    CSRF_HEADER: token,
                    # set explicitly: the cookie jar would drop Secure cookies on plain HTTP
                    "Cookie": f"{CSRF_COOKIE}={token}; {SESSION_COOKIE}={session}",
                },
            )
            if response.status_code == 401 and attempt == 1:
                self._access, self._csrf = None, None
                continue
            _raise_for(response)
            answer: dict[str, Any] = response.json()
            return answer
        raise AssertionError("unreachable")

    def health(self) -> bool:
        return self._send("GET", "/healthz").is_success
