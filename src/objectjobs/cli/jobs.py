"""``objectjobs jobs …`` and ``objectjobs login``: the operator's client of the MAPI."""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn

from objectjobs.cli import render
from objectjobs.cli.client import (
    DEFAULT_URL,
    ApiClient,
    Credentials,
    CredentialStore,
    normalize_url,
)
from objectjobs.cli.common import (
    EXIT_USAGE,
    fail,
    one_line_errors,
    print_json,
    print_json_line,
    read_password,
    stdout,
)
from objectjobs.errors import AuthenticationFailed, ObjectJobsError

app = typer.Typer(help="Jobs, through the API (SPEC §2.5, §2.6).", no_args_is_help=True)

ACTIVE = frozenset({"EXAMINING", "PROCESSING", "EXECUTING"})
# negative job ids are ordinary (SPEC §2.4): let "-123" through as an argument, not an option
ID_COMMAND = {"ignore_unknown_options": True}

Url = Annotated[
    str,
    typer.Option("--url", envvar="OBJECTJOBS_URL", help="API base URL.", show_envvar=True),
]
Insecure = Annotated[
    bool, typer.Option("--insecure", help="Do not verify the server's TLS certificate.")
]
Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]
JobId = Annotated[int, typer.Argument(help="Job id (may be negative).", metavar="ID")]


def connect(url: str, insecure: bool) -> ApiClient:
    """A client with the environment's credentials, else the saved login for ``url``."""
    user = os.environ.get("OBJECTJOBS_USER")
    password = os.environ.get("OBJECTJOBS_PASSWORD")
    if user and password:
        return ApiClient(url, Credentials(user=user, password=password), verify=not insecure)
    store = CredentialStore()
    saved = store.get(url)
    if saved and saved.get("refresh_token") and (not user or saved.get("user") == user):
        saved_user = saved.get("user", "")

        def keep(token: str) -> None:
            store.save(url, saved_user, token)

        return ApiClient(
            url,
            Credentials(user=saved_user, refresh_token=saved["refresh_token"]),
            verify=not insecure,
            on_refresh_token=keep,
        )
    raise AuthenticationFailed(
        f"no credentials for {normalize_url(url)}: set OBJECTJOBS_USER and "
        "OBJECTJOBS_PASSWORD, or run `objectjobs login`"
    )


def _job_body(job_id: int) -> dict[str, Any]:
    return {"jobId": {"id": job_id}}


def parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"bad --param {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        params[key.strip()] = value
    return params


# --- login ----------------------------------------------------------------------------------


@one_line_errors
def login(
    url: Url = DEFAULT_URL,
    user: Annotated[
        str | None, typer.Option("--user", envvar="OBJECTJOBS_USER", help="User name.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    insecure: Insecure = False,
) -> None:
    """Sign in and save a refresh token (never the password) for URL."""
    if not user:
        if not sys.stdin.isatty():
            fail("no user name: use --user or OBJECTJOBS_USER", EXIT_USAGE)
        user = str(typer.prompt("User"))
    password = os.environ.get("OBJECTJOBS_PASSWORD") if not password_stdin else None
    if not password:
        password = read_password(from_stdin=password_stdin, confirm=False)
    with ApiClient(url, Credentials(user=user, password=password), verify=not insecure) as api:
        answer = api.password_login(user, password)
    refresh = answer.get("refresh_token")
    if not refresh:
        fail(f"{normalize_url(url)} issued no refresh token; use OBJECTJOBS_PASSWORD instead")
    store = CredentialStore()
    store.save(url, user, str(refresh))
    print(f"logged in to {normalize_url(url)} as {user} (token saved in {store.path})")


@one_line_errors
def logout(url: Url = DEFAULT_URL) -> None:
    """Forget the saved login for URL."""
    removed = CredentialStore().remove(url)
    print(f"{'logged out of' if removed else 'no saved login for'} {normalize_url(url)}")


# --- jobs -------------------------------------------------------------------------------------


def _pages(
    api: ApiClient, operation: str, body: dict[str, Any], key: str, follow: bool
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    seen: set[str] = set()
    while True:
        answer = api.call(operation, {**body, **({"pageToken": token} if token else {})})
        yield answer
        token = answer.get("pageToken")
        if not follow or not token:
            return
        if token in seen:
            # a server whose paging does not advance must not make --all loop forever
            raise ObjectJobsError(f"{operation}: the server repeated a page token; stopping")
        seen.add(token)


@app.command("list")
@one_line_errors
def list_jobs(
    bucket: Annotated[str | None, typer.Option("--bucket", help="Only this bucket.")] = None,
    user: Annotated[int | None, typer.Option("--user", help="Only this user id (admins).")] = None,
    page_size: Annotated[
        int | None, typer.Option("--page-size", help="Jobs per page (API default 1000).")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    url: Url = DEFAULT_URL,
    insecure: Insecure = False,
    json_out: Json = False,
) -> None:
    """List jobs, newest first."""
    body: dict[str, Any] = {}
    if bucket:
        body["bucketName"] = bucket
    if user is not None:
        body["userId"] = {"id": user}
    if page_size is not None:
        body["pageSize"] = page_size
    jobs: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    with connect(url, insecure) as api:
        for last in _pages(api, "jobs/list", body, "jobs", all_pages):
            jobs.extend(last.get("jobs") or [])
    more = last.get("pageToken")
    if json_out:
        print_json(last if not all_pages else {"jobs": jobs, "pageToken": None})
        return
    stdout().print(render.jobs_table(jobs))
    if more:
        print("more jobs: use --all, or --page-size", file=sys.stderr)


@app.command()
@one_line_errors
def create(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="e.g. BATCH_REPLICATE.")],
    bucket: Annotated[str, typer.Argument(metavar="BUCKET")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Job parameter KEY=VALUE (repeatable)."),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Makes a retried create safe.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the job id.")] = False,
    url: Url = DEFAULT_URL,
    insecure: Insecure = False,
    json_out: Json = False,
) -> None:
    """Create a job on BUCKET."""
    params = parse_params(param or [])
    body: dict[str, Any] = {"jobType": job_type.upper(), "bucketName": bucket}
    if params:
        body["jobParams"] = params
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    with connect(url, insecure) as api:
        answer = api.call("jobs/create", body, headers=headers)
    job = answer.get("jobStatus") or {}
    if json_out:
        print_json(answer)
    elif quiet:
        print(render.job_id(job))
    else:
        stdout().print(render.job_fields(job))


def _single(
    operation: str, key: str, job_id: int, url: str, insecure: bool, json_out: bool
) -> None:
    with connect(url, insecure) as api:
        answer = api.call(operation, _job_body(job_id))
    if json_out:
        print_json(answer)
    else:
        stdout().print(render.job_fields(answer.get(key) or {}))


@app.command(context_settings=ID_COMMAND)
@one_line_errors
def status(
    job_id: JobId, url: Url = DEFAULT_URL, insecure: Insecure = False, json_out: Json = False
) -> None:
    """Show a job."""
    _single("jobs/status", "status", job_id, url, insecure, json_out)


@app.command(context_settings=ID_COMMAND)
@one_line_errors
def cancel(
    job_id: JobId, url: Url = DEFAULT_URL, insecure: Insecure = False, json_out: Json = False
) -> None:
    """Cancel a job."""
    _single("jobs/cancel", "status", job_id, url, insecure, json_out)


@app.command(context_settings=ID_COMMAND)
@one_line_errors
def describe(
    job_id: JobId, url: Url = DEFAULT_URL, insecure: Insecure = False, json_out: Json = False
) -> None:
    """Show a job with totals, plan, progress, rate, ETA and failure reasons."""
    with connect(url, insecure) as api:
        answer = api.call("jobs/describe", _job_body(job_id))
    if json_out:
        print_json(answer)
    else:
        render.print_describe(stdout(), answer)


@app.command(context_settings=ID_COMMAND)
@one_line_errors
def report(
    job_id: JobId,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="SUCCEEDED, FAILED or SKIPPED.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write every result to FILE as CSV ('-': stdout).")
    ] = None,
    page_size: Annotated[int | None, typer.Option("--page-size")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
    url: Url = DEFAULT_URL,
    insecure: Insecure = False,
    json_out: Json = False,
) -> None:
    """Per-object results of a job."""
    body: dict[str, Any] = _job_body(job_id)
    if outcome:
        body["outcome"] = outcome.upper()
    if page_size is not None:
        body["pageSize"] = page_size
    with connect(url, insecure) as api:
        if csv_file is not None:
            _report_csv(api, body, csv_file)
            return
        results: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        for last in _pages(api, "jobs/report", body, "results", all_pages):
            results.extend(last.get("results") or [])
    if json_out:
        print_json(last if not all_pages else {"results": results, "pageToken": None})
        return
    stdout().print(render.report_table(results))
    if last.get("pageToken"):
        print("more results: use --all, or --csv FILE", file=sys.stderr)


def _report_csv(api: ApiClient, body: dict[str, Any], target: Path) -> None:
    # streamed page by page: a report can hold millions of rows
    out = sys.stdout if str(target) == "-" else target.open("w", newline="", encoding="utf-8")
    rows = 0
    try:
        writer = csv.DictWriter(out, fieldnames=list(render.REPORT_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for page in _pages(api, "jobs/report", body, "results", True):
            for result in page.get("results") or []:
                writer.writerow({k: "" if v is None else v for k, v in result.items()})
                rows += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if out is not sys.stdout:
        print(f"{rows} results written to {target}", file=sys.stderr)


# --- watch ------------------------------------------------------------------------------------


def _planned(answer: dict[str, Any]) -> int | None:
    plan = answer.get("plan")
    if plan:
        return sum(int(v.get("objects", 0)) for v in plan.values())
    totals = answer.get("totals")
    if totals and totals.get("objects") is not None:
        return int(totals["objects"])
    return None


def _done(job: dict[str, Any]) -> int:
    stats = job.get("jobStats") or {}
    return int(stats.get("processed", 0)) + int(stats.get("failed", 0))


def _fmt_eta(eta: Any) -> str:
    if not isinstance(eta, int | float):
        return "ETA -"
    minutes, seconds = divmod(int(eta), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{seconds:02d}"


def _rate_and_eta(
    answer: dict[str, Any], measured: float | None, planned: int | None, done: int
) -> tuple[float | None, float | None]:
    """The API's rate and ETA; while it has none yet, what this client measured."""
    rate = answer.get("objectsPerSecond")
    if not isinstance(rate, int | float) or rate <= 0:
        rate = measured
    eta = answer.get("etaSeconds")
    if not isinstance(eta, int | float) and rate and planned is not None:
        eta = max(planned - done, 0) / rate
    return rate, eta


@app.command(context_settings=ID_COMMAND)
@one_line_errors
def watch(
    job_id: JobId,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between polls.")
    ] = 1.0,
    url: Url = DEFAULT_URL,
    insecure: Insecure = False,
    json_out: Json = False,
) -> None:
    """Follow a job until it ends (exit 1 if it ends FAILED or CANCELLED)."""
    with connect(url, insecure) as api:
        answer = api.call("jobs/describe", _job_body(job_id))
        if json_out:
            answer = _watch_json(api, job_id, answer, interval)
        else:
            answer = _watch_progress(api, job_id, answer, interval)
    job = answer.get("job") or {}
    state = job.get("jobState")
    stats = job.get("jobStats") or {}
    summary = (
        f"job {job_id} {state}: processed {stats.get('processed', 0)}, "
        f"failed {stats.get('failed', 0)}"
    )
    if state == "FAILED":
        reasons = "; ".join(answer.get("failureReasons") or [])
        fail(f"{summary}{': ' + reasons if reasons else ''}")
    if state == "CANCELLED":
        fail(summary)
    if not json_out:
        print(summary)


def _watch_json(
    api: ApiClient, job_id: int, answer: dict[str, Any], interval: float
) -> dict[str, Any]:
    # one describe answer per line, whenever something changed: easy to tail in scripts
    previous: dict[str, Any] | None = None
    while True:
        snapshot = {k: v for k, v in answer.items() if k not in ("objectsPerSecond", "etaSeconds")}
        if snapshot != previous:
            print_json_line(answer)
            previous = snapshot
        if (answer.get("job") or {}).get("jobState") not in ACTIVE:
            return answer
        time.sleep(interval)
        answer = api.call("jobs/describe", _job_body(job_id))


def _watch_progress(
    api: ApiClient, job_id: int, answer: dict[str, Any], interval: float
) -> dict[str, Any]:
    console = stdout()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[eta]}"),
    )
    state = None
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"job {job_id}", total=None, count="", rate="", eta="")
        while True:
            job = answer.get("job") or {}
            if job.get("jobState") != state:
                state = job.get("jobState")
                progress.console.print(f"job {job_id}: {state}", highlight=False)
            planned = _planned(answer)
            done = _done(job)
            progress.update(task, total=planned, completed=done)
            rate, eta = _rate_and_eta(answer, progress.tasks[0].speed, planned, done)
            progress.update(
                task,
                description=f"job {job_id} {state}",
                count=f"{done:,}/{'?' if planned is None else f'{planned:,}'}",
                rate="" if rate is None else f"{rate:,.1f} obj/s",
                eta=_fmt_eta(eta),
            )
            if state not in ACTIVE:
                return answer
            time.sleep(interval)
            answer = api.call("jobs/describe", _job_body(job_id))
