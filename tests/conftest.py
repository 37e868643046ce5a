"""Shared session fixtures: real servers on 127.0.0.1, started lazily, stopped at session end.

A server that cannot start fails the test loudly with its log tail; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests import servers
from tests.servers import PostgresServer, S3Endpoint

S = TypeVar("S", bound=servers._Server)


def _serve(start: Callable[[], S]) -> Iterator[S]:
    try:
        server = start()
    except servers.ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _serve(servers.start_postgres)


@pytest.fixture(scope="session")
def rgw() -> Iterator[S3Endpoint]:
    for server in _serve(servers.start_rgw_server):
        assert server.endpoint is not None
        yield server.endpoint


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Endpoint]:
    for server in _serve(servers.start_moto_server):
        assert server.endpoint is not None
        yield server.endpoint


@pytest.fixture(scope="session")
def moto_s3_second() -> Iterator[S3Endpoint]:
    for server in _serve(servers.start_moto_server):
        assert server.endpoint is not None
        yield server.endpoint


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    for server in _serve(servers.start_rabbitmq):
        yield server.url


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    return data
