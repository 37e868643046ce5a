"""What every command shares: one-line errors, JSON output, the async runner."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import tomllib
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from objectjobs.errors import ConfigurationError, ObjectJobsError

if TYPE_CHECKING:
    from objectjobs.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

# exit statuses scripts can rely on
EXIT_ERROR = 1
EXIT_USAGE = 2


def stdout() -> Console:
    # built per call: CliRunner swaps sys.stdout between invocations. Piped output gets a
    # wide page so tables are not cut to 80 columns for grep and less.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 400)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    line = " ".join(str(message).split()) or "unknown error"
    print(f"error: {line}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def one_line_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn the errors objectjobs raises on purpose into one line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except ObjectJobsError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            # Ctrl-C is how an operator stops `serve` or `watch`: not an error worth a line
            raise typer.Exit(130) from None

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def read_password(*, from_stdin: bool, confirm: bool) -> str:
    """A password from one line of stdin, or typed twice (hidden) at a terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on standard input", EXIT_USAGE)
        return password
    if not sys.stdin.isatty():
        fail("standard input is not a terminal: use --password-stdin", EXIT_USAGE)
    password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))
    if not password:
        fail("empty password", EXIT_USAGE)
    return password


def build_settings(
    config: Path | None,
    data_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
) -> Settings:
    """Flags over environment over file; nested flags merge into what env and file give."""
    # imported on use: pydantic-settings is a third of the start-up time of `jobs` commands
    from objectjobs.settings import load_settings

    path = config or os.environ.get("OBJECTJOBS_CONFIG")
    if path is not None and Path(path).is_file():
        # load_settings lets a TOML syntax error through as a traceback; say it in one line
        try:
            tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"invalid configuration file {path}: {exc}") from exc
    server: dict[str, Any] = {}
    if host is not None:
        server["host"] = host
    if port is not None:
        server["port"] = port
    return load_settings(config, data_dir=data_dir, server=server or None)
