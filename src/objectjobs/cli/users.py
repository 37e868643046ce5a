"""``objectjobs user …``: local users, managed directly in the job store (SPEC §5.3)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from objectjobs.cli.common import (
    EXIT_USAGE,
    build_settings,
    fail,
    one_line_errors,
    print_json,
    read_password,
    run,
    stdout,
)
from objectjobs.models import ROLES, User

if TYPE_CHECKING:
    from objectjobs.settings import Settings

app = typer.Typer(help="Local users, directly in the job store.", no_args_is_help=True)

Config = Annotated[
    Path | None,
    typer.Option("--config", envvar="OBJECTJOBS_CONFIG", help="TOML configuration file."),
]
DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (embedded defaults).")
]


# the store and its drivers are imported on use: `objectjobs jobs …` should start quickly
async def _add(settings: Settings, name: str, role: str, password: str) -> User:
    from objectjobs.auth import hash_password
    from objectjobs.wiring import open_store

    store = await open_store(settings)
    try:
        # scrypt is deliberately slow: keep it off the event loop
        password_hash = await asyncio.to_thread(hash_password, password)
        return await store.create_user(name, role, password_hash)
    finally:
        await store.close()


async def _list(settings: Settings) -> list[User]:
    from objectjobs.wiring import open_store

    store = await open_store(settings)
    try:
        return await store.list_users()
    finally:
        await store.close()


@app.command()
@one_line_errors
def add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option("--role", help="admin, operator or viewer.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: Config = None,
    data_dir: DataDir = None,
) -> None:
    """Add a local user."""
    if role not in ROLES:
        fail(f"unknown role {role!r}: choose one of {', '.join(ROLES)}", EXIT_USAGE)
    if not name.strip():
        fail("empty user name", EXIT_USAGE)
    settings = build_settings(config, data_dir)
    password = read_password(from_stdin=password_stdin, confirm=True)
    user = run(_add(settings, name, role, password))
    print(f"added user {user.name} (id {user.id}, role {user.role})")


@app.command("list")
@one_line_errors
def list_users(
    config: Config = None,
    data_dir: DataDir = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List local users."""
    users = run(_list(build_settings(config, data_dir)))
    if json_out:
        print_json(
            [
                {
                    "id": u.id,
                    "name": u.name,
                    "role": u.role,
                    "created": u.created_at.isoformat().replace("+00:00", "Z"),
                }
                for u in users
            ]
        )
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "ROLE", "CREATED"):
        table.add_column(column, justify="right" if column == "ID" else "left")
    for u in users:
        table.add_row(str(u.id), u.name, u.role, u.created_at.strftime("%Y-%m-%d %H:%M:%SZ"))
    stdout().print(table)
