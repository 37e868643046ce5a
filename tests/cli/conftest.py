"""Fixtures for the command-line tests: one real ``objectjobs serve`` process per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.serving import ServeProcess, start_serve


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OBJECTJOBS_* setting of the caller's shell, and saved logins under tmp_path."""
    import os

    for name in list(os.environ):
        if name.startswith("OBJECTJOBS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    server = start_serve(tmp_path_factory.mktemp("serve"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(served: ServeProcess) -> str:
    """A fresh bucket (a directory under the storage root) holding a few objects."""
    name = f"b-{uuid.uuid4().hex[:10]}"
    root = served.data_dir / "buckets" / name
    (root / "dir").mkdir(parents=True)
    for i in range(3):
        (root / f"k{i}.txt").write_text(f"object {i}\n")
    (root / "dir" / "nested.bin").write_bytes(b"\0" * 1000)
    return name


@pytest.fixture
def slow_bucket(served: ServeProcess) -> str:
    """A bucket of 30 objects: with ``objectsPerSecond=1`` a job on it stays active for
    half a minute, long enough to cancel it deterministically."""
    name = f"slow-{uuid.uuid4().hex[:10]}"
    root = served.data_dir / "buckets" / name
    root.mkdir(parents=True)
    for i in range(30):
        (root / f"k{i:02d}").write_text(f"{i}\n")
    return name
