"""Human-readable tables for the API's answers (``--json`` prints the answers instead)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def _time(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("-" if value is None else str(value))


def job_id(job: Mapping[str, Any]) -> Any:
    ident = job.get("jobId")
    return ident.get("id") if isinstance(ident, Mapping) else ident


def jobs_table(jobs: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "TYPE", "STATE", "BUCKET", "PROCESSED", "FAILED", "STARTED", "COMPLETED"):
        numeric = column in ("ID", "PROCESSED", "FAILED")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for job in jobs:
        stats = job.get("jobStats") or {}
        table.add_row(
            str(job_id(job)),
            str(job.get("jobType", "")),
            str(job.get("jobState", "")),
            str(job.get("bucketName", "")),
            _num(stats.get("processed")),
            _num(stats.get("failed")),
            _time(job.get("startTime")),
            _time(job.get("completeTime")),
        )
    return table


def _fields() -> Table:
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    return table


def job_fields(job: Mapping[str, Any]) -> Table:
    table = _fields()
    stats = job.get("jobStats") or {}
    params = job.get("jobParams") or {}
    table.add_row("id", str(job_id(job)))
    table.add_row("type", str(job.get("jobType", "")))
    table.add_row("state", str(job.get("jobState", "")))
    table.add_row("bucket", str(job.get("bucketName", "")))
    table.add_row("started", _time(job.get("startTime")))
    table.add_row("completed", _time(job.get("completeTime")))
    table.add_row("processed", _num(stats.get("processed")))
    table.add_row("failed", _num(stats.get("failed")))
    table.add_row("params", ", ".join(f"{k}={v}" for k, v in params.items()) or "-")
    return table


def print_describe(console: Console, answer: Mapping[str, Any]) -> None:
    job = answer.get("job") or {}
    table = job_fields(job)
    owner = answer.get("owner") or {}
    table.add_row("owner", f"{owner.get('name', '?')} (id {owner.get('id', '?')})")
    table.add_row("created", _time(answer.get("createTime")))
    totals = answer.get("totals")
    if totals:
        table.add_row(
            "totals", f"{_num(totals.get('objects'))} objects, {_num(totals.get('bytes'))} bytes"
        )
    progress = answer.get("progress") or {}
    if progress:
        table.add_row(
            "progress",
            ", ".join(f"{k} {_num(v)}" for k, v in progress.items()),
        )
    rate = answer.get("objectsPerSecond")
    if isinstance(rate, int | float):
        table.add_row("rate", f"{rate:,.1f} objects/s")
    eta = answer.get("etaSeconds")
    if isinstance(eta, int | float):
        table.add_row("eta", f"{eta:,.0f} s")
    console.print(table)

    plan = answer.get("plan")
    if plan:
        plan_table = Table(title="plan", box=None, header_style="bold", title_justify="left")
        plan_table.add_column("ACTION")
        plan_table.add_column("OBJECTS", justify="right")
        plan_table.add_column("BYTES", justify="right")
        for action, counts in plan.items():
            plan_table.add_row(action, _num(counts.get("objects")), _num(counts.get("bytes")))
        console.print(plan_table)

    usage = answer.get("usage")
    if usage:
        usage_table = Table(title="usage", box=None, header_style="bold", title_justify="left")
        usage_table.add_column("FIGURE")
        for column in ("BEFORE", "AFTER", "DELTA"):
            usage_table.add_column(column, justify="right")
        after = usage.get("after") or {}
        for figure, value in after.items():
            if isinstance(value, Mapping):
                continue  # byStorageClass: shown with --json
            before = (usage.get("before") or {}).get(figure)
            delta = (usage.get("delta") or {}).get(figure)
            usage_table.add_row(figure, _num(before), _num(value), _num(delta))
        console.print(usage_table)

    reasons = answer.get("failureReasons") or []
    for reason in reasons:
        console.print(f"[red]failure:[/red] {reason}", markup=True, highlight=False)


REPORT_COLUMNS = ("key", "versionId", "action", "outcome", "errorCode", "message")


def report_table(results: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in REPORT_COLUMNS:
        table.add_column(column.upper(), overflow="fold")
    for result in results:
        table.add_row(
            *("" if result.get(c) is None else str(result.get(c)) for c in REPORT_COLUMNS)
        )
    return table
