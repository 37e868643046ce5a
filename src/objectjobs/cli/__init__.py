"""The ``objectjobs`` command (SPEC §5.3).

``serve``/``worker`` run the server processes, ``user`` manages local users in the job store,
``login``/``jobs`` are a client of the API. Expected errors end in one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import typer

from objectjobs import __version__
from objectjobs.cli import jobs, server, users

app = typer.Typer(
    name="objectjobs",
    help="Bulk jobs over S3-compatible buckets behind a MAPI-compatible jobs API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(server.serve)
app.command()(server.worker)
app.add_typer(users.app, name="user")
app.command()(jobs.login)
app.command()(jobs.logout)
app.add_typer(jobs.app, name="jobs")


def _version(value: bool) -> None:
    if value:
        print(f"objectjobs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Bulk jobs over S3-compatible buckets behind a MAPI-compatible jobs API."""


def main() -> None:
    app()
