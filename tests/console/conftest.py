"""The console's fixtures: a real objectjobs server (API, console, worker) on loopback, and a
real headless Chromium driven by Playwright.

The server runs in a thread with its own event loop: the app from ``create_app(settings)``
(whose lifespan opens the store and storage and runs the embedded worker, as ``objectjobs
serve`` does), with the console mounted here when the app does not mount it itself yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from pydantic import SecretStr

from objectjobs.api.app import create_app
from objectjobs.console import mount_console
from objectjobs.settings import AuthSettings, Settings, WorkerSettings
from tests.servers import free_port

ADMIN = "admin"
PASSWORD = "console-test-Pa55word"
SLOW_BUCKET_OBJECTS = 3000
SMALL_BUCKET_OBJECTS = 20
TALLY_BUCKET_OBJECTS = 37
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


def _fill_bucket(root: Path, name: str, count: int) -> None:
    bucket = root / name
    for i in range(count):
        # a few folders, so keys look like an operator's data
        path = bucket / f"dir{i % 10:02d}" / f"obj-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i % 97 + 1))


class ThreadServer:
    """uvicorn serving the app (API, console, the app's embedded worker) in a background
    thread; stop() shuts it down cleanly."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="console-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()/stop(), not swallowed
            self.error = exc

    async def _main(self) -> None:
        # the app's own lifespan opens the store and storage and runs the worker, as serve does
        app = create_app(self.settings)
        if not any(getattr(r, "path", None) == "/console" for r in app.routes):
            mount_console(app)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        await self.server.serve()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"console test server died: {self.error!r}")
            if self.server is not None and self.server.started:
                return
            time.sleep(0.05)
        raise RuntimeError("console test server did not start within 60 s")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(30)
        if self.thread.is_alive():
            raise RuntimeError("console test server did not stop within 30 s")


@dataclass
class Console:
    url: str  # the server's base URL, no trailing slash
    data_dir: Path

    @property
    def console_url(self) -> str:
        return f"{self.url}/console/"

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """A signed-in MAPI client, independent of the browser, to check what the UI did."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            client.get("/mapi/v1/csrf").raise_for_status()
            answer = client.post(
                "/ui/auth/realms/vsp-object/protocol/openid-connect/token",
                data={
                    "grant_type": "password",
                    "client_id": "vsp-object-external-client",
                    "username": ADMIN,
                    "password": PASSWORD,
                },
            )
            answer.raise_for_status()
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            client.headers["X-XSRF-TOKEN"] = client.cookies["XSRF-TOKEN"]
            yield client


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console-data")
    _fill_bucket(data_dir / "buckets", "slow", SLOW_BUCKET_OBJECTS)
    _fill_bucket(data_dir / "buckets", "small", SMALL_BUCKET_OBJECTS)
    _fill_bucket(data_dir / "buckets", "tally", TALLY_BUCKET_OBJECTS)
    settings = Settings(
        data_dir=data_dir,
        # the shortest token lifetime allowed: every test also exercises the refresh
        auth=AuthSettings(admin_password=SecretStr(PASSWORD), token_lifetime_s=10),
        worker=WorkerSettings(enabled=True, lease_s=5, heartbeat_s=1, poll_s=0.2),
    )
    server = ThreadServer(settings, free_port())
    server.start()
    try:
        yield Console(server.url, data_dir)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(20_000)
    try:
        yield page
        # an uncaught exception in the console's scripts fails the test that caused it
        assert errors == [], f"uncaught errors in the page: {errors}"
    finally:
        context.close()


def sign_in(page: Page, console: Console, password: str = PASSWORD, username: str = ADMIN) -> None:
    page.goto(console.console_url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
