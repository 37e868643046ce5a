"""A bare MAPI conversation over httpx, written from SPEC §2 (independent of the CLI's client)."""

from __future__ import annotations

from typing import Any

import httpx

TOKEN_PATH = "/ui/auth/realms/vsp-object/protocol/openid-connect/token"


class Mapi:
    def __init__(self, url: str, user: str, password: str, *, verify: Any = True) -> None:
        self.http = httpx.Client(base_url=url, verify=verify, timeout=30)
        answer = self.http.post(
            TOKEN_PATH,
            data={
                "grant_type": "password",
                "client_id": "vsp-object-external-client",
                "username": user,
                "password": password,
            },
        )
        answer.raise_for_status()
        body = answer.json()
        assert body["token_type"].lower() == "bearer"
        self.token = body["access_token"]
        csrf = self.http.get("/mapi/v1/csrf")
        csrf.raise_for_status()
        self.xsrf = csrf.cookies["XSRF-TOKEN"]
        self.session = csrf.cookies["vertx-web.session"]

    def post(self, operation: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(
            f"/mapi/v1/{operation}",
            json=body or {},
            headers={
                "Authorization": f"Bearer {self.token}",
                "X-XSRF-TOKEN": self.xsrf,
                "Cookie": f"XSRF-TOKEN={self.xsrf}; vertx-web.session={self.session}",
            },
        )

    def ok(self, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post(operation, body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def close(self) -> None:
        self.http.close()


def token_error(url: str, user: str, password: str) -> tuple[int, dict[str, Any]]:
    response = httpx.post(
        f"{url}{TOKEN_PATH}",
        data={
            "grant_type": "password",
            "client_id": "vsp-object-external-client",
            "username": user,
            "password": password,
        },
        verify=False,
    )
    return response.status_code, response.json()
