"""API fixtures: the real app over the real SQL job store and local storage, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from objectjobs.api.app import create_app
from objectjobs.auth import hash_password
from objectjobs.models import User
from objectjobs.settings import Settings, load_settings
from objectjobs.storage.local import LocalStorage
from objectjobs.store.sql import SqlJobStore

ADMIN_PASSWORD = "admin-secret-pw"
TOKEN_PATH = "/ui/auth/realms/vsp-object/protocol/openid-connect/token"


def make_settings(data_dir: Path, *, worker: bool = False, **auth: Any) -> Settings:
    # the embedded worker is off unless a test asks for it: it would race the tests that
    # play the worker's part through the store (claiming a job's task, recording results)
    return load_settings(
        data_dir=data_dir,
        auth={"admin_password": ADMIN_PASSWORD, **auth},
        worker={"enabled": worker},
    )


@dataclass
class Api:
    """The app under test and helpers to call it as a given user."""

    app: FastAPI
    client: httpx.AsyncClient
    store: SqlJobStore
    storage: LocalStorage
    settings: Settings
    users: dict[str, User] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _csrf: tuple[str, str] | None = None
    _serial: int = 0

    def _unique(self) -> dict[str, str]:
        """Params with a fresh prefix, so jobs never collide in the duplicate-active guard."""
        self._serial += 1
        return {"prefix": f"auto{self._serial}/"}

    async def add_user(self, name: str, role: str) -> User:
        password = f"{name}-pw"
        # a cheap hash keeps the tests fast; verify reads the cost from the hash itself
        user = await self.store.create_user(name, role, hash_password(password, n=2**8))
        self.users[name] = user
        self.passwords[name] = password
        return user

    async def login(self, name: str) -> str:
        if name not in self._tokens:
            password = ADMIN_PASSWORD if name == "admin" else self.passwords[name]
            r = await self.client.post(
                TOKEN_PATH,
                data={
                    "grant_type": "password",
                    "client_id": "vsp-object-external-client",
                    "username": name,
                    "password": password,
                },
            )
            assert r.status_code == 200, r.text
            self._tokens[name] = r.json()["access_token"]
        return self._tokens[name]

    async def csrf(self) -> tuple[str, str]:
        """(XSRF-TOKEN, vertx-web.session) from GET /mapi/v1/csrf."""
        if self._csrf is None:
            r = await self.client.get("/mapi/v1/csrf")
            assert r.status_code == 200, r.text
            self._csrf = (r.cookies["XSRF-TOKEN"], r.cookies["vertx-web.session"])
            self.client.cookies.clear()  # tests send cookies explicitly
        return self._csrf

    async def headers(self, user: str | None = "admin", *, csrf: bool = True) -> dict[str, str]:
        headers: dict[str, str] = {}
        if user is not None:
            headers["Authorization"] = f"Bearer {await self.login(user)}"
        if csrf:
            token, session = await self.csrf()
            headers["X-XSRF-TOKEN"] = token
            headers["Cookie"] = f"XSRF-TOKEN={token}; vertx-web.session={session}"
        return headers

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        user: str | None = "admin",
        prefix: str = "/mapi/v1",
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = await self.headers(user)
        headers.update(extra_headers or {})
        if body is None:
            return await self.client.post(prefix + path, headers=headers)
        return await self.client.post(prefix + path, json=body, headers=headers)

    async def create_job(
        self,
        bucket: str,
        job_type: str = "METRIC_RECONCILIATION",
        *,
        user: str = "admin",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        r = await self.post(
            "/jobs/create",
            {"jobType": job_type, "bucketName": bucket, "jobParams": params or self._unique()},
            user=user,
        )
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()["jobStatus"]
        return job


class _Builder:
    """Builds apps over fresh stores in ``root`` and tears them all down at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: list[tuple[LifespanManager, httpx.AsyncClient, SqlJobStore, LocalStorage]] = []

    async def __call__(
        self,
        database_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        worker: bool = False,
        **auth: Any,
    ) -> Api:
        data_dir = self.root / f"data{len(self.built)}"
        data_dir.mkdir()
        settings = make_settings(data_dir, worker=worker, **auth)
        store = SqlJobStore(database_url or settings.database_url, clock=clock)
        await store.migrate()
        storage = LocalStorage(data_dir / "buckets")
        app = create_app(settings, store=store, storage=storage)
        manager = LifespanManager(app)
        await manager.__aenter__()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://127.0.0.1"
        )
        self.built.append((manager, client, store, storage))
        api = Api(app, client, store, storage, settings)
        await api.add_user("oper", "operator")
        await api.add_user("oper2", "operator")
        await api.add_user("view", "viewer")
        await storage.create_bucket("b1")
        await storage.create_bucket("b2")
        return api

    async def close(self) -> None:
        for manager, client, store, storage in reversed(self.built):
            await client.aclose()
            await manager.__aexit__(None, None, None)
            await store.close()
            await storage.close()


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await make_api(database_url=None, clock=None, worker=False, **auth)``."""
    builder = _Builder(tmp_path)
    yield builder
    await builder.close()


@pytest.fixture
async def api(make_api: Callable[..., Any]) -> Api:
    built: Api = await make_api()
    return built


@pytest.fixture(scope="module")
async def shared_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One app per module for tests that only read, or whose writes are refused."""
    builder = _Builder(tmp_path_factory.mktemp("shared_api"))
    yield await builder()
    await builder.close()
