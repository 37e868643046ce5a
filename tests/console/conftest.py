"""The console's fixtures: a real objectjobs server (API, console, worker) on loopback, and a
real headless Chromium driven by Playwright.

The server is the real ``objectjobs serve`` process, configured through ``OBJECTJOBS_*``
environment variables as an operator would. (It once ran in a thread of the test process; two
threads importing through pytest's assertion rewriter at once tripped a CPython 3.11 AST bug.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.cli.serving import start_serve

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
    workdir = tmp_path_factory.mktemp("console")
    data_dir = workdir / "data"
    _fill_bucket(data_dir / "buckets", "slow", SLOW_BUCKET_OBJECTS)
    _fill_bucket(data_dir / "buckets", "small", SMALL_BUCKET_OBJECTS)
    _fill_bucket(data_dir / "buckets", "tally", TALLY_BUCKET_OBJECTS)
    server = start_serve(
        workdir,
        env={
            "OBJECTJOBS_AUTH__ADMIN_PASSWORD": PASSWORD,
            # the shortest token lifetime allowed: every test also exercises the refresh
            "OBJECTJOBS_AUTH__TOKEN_LIFETIME_S": "10",
            "OBJECTJOBS_WORKER__LEASE_S": "5",
            "OBJECTJOBS_WORKER__HEARTBEAT_S": "1",
            "OBJECTJOBS_WORKER__POLL_S": "0.2",
        },
    )
    assert server.data_dir == data_dir
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
