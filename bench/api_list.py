"""``jobs/list`` latency at depth and throughput against ``user/info``, 1,000,000 jobs stored.

    python bench/api_list.py [--jobs 1000000] [--db sqlite,postgres] [--requests 200]
                             [--duration 10] [--concurrency 32] [--walk]
                             [--out bench/results/api_list.md]

For each database: the schema is created by the store, the admin through the store, then the
``jobs`` rows are bulk-loaded in the store's stored form (SQLite: one executemany
transaction; PostgreSQL: COPY); every page read back is checked against the expected ids.
The real server runs as ``python -m objectjobs serve`` (worker
off) and is driven over HTTP on 127.0.0.1:

- latency: one keep-alive client, requests round-robin over first page / deep page at
  pageSize 100 and 1000 (interleaved, so load drifts on a shared machine hit all cases alike);
- deep page: the token after the middle job, issued with the server's own ``PageTokens`` and
  key (``--walk`` pages there from the top with pageSize 10 000 instead); tokens bind the
  filters and caller, not the page size, so one token serves both measured sizes; every
  case's first answer is checked to hold exactly the expected jobs;
- store: the same pages through ``SqlJobStore.list_jobs`` in-process, to split store from HTTP;
- throughput: a separate client process runs ``--concurrency`` concurrent requests for
  ``--duration`` seconds on ``jobs/list`` (pageSize 100, first page), then on ``user/info``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from objectjobs.auth import hash_password  # noqa: E402
from objectjobs.paging import PageTokens  # noqa: E402
from objectjobs.store.interface import JobCursor  # noqa: E402
from objectjobs.store.sql import SqlJobStore  # noqa: E402
from tests.cli.mapi import Mapi  # noqa: E402
from tests.servers import free_port, start_postgres  # noqa: E402

PASSWORD = "bench-admin-password"
BASE_TIME = datetime(2020, 1, 1, tzinfo=UTC)
JOB_TYPE = "METRIC_RECONCILIATION"
SECRET = "bench-secret-key-not-for-production-use"
WALK_PAGE = 10_000
SIZES = (100, 1000)


@dataclass
class DbResult:
    name: str
    fill_s: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=dict)  # case -> seconds
    throughput: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# --- filling the store --------------------------------------------------------------------


def job_ids(count: int, seed: int) -> list[int]:
    """Distinct random non-zero signed 32-bit ids, in insertion (= start_time) order."""
    ids = random.Random(seed).sample(range(-(2**31), 2**31), count + 1)
    if 0 in ids:
        ids.remove(0)
    return ids[:count]


async def _prepare(url: str) -> int:
    store = SqlJobStore(url)
    try:
        await store.migrate()
        user = await store.create_user("admin", "admin", hash_password(PASSWORD))
        return user.id
    finally:
        await store.close()


def _sqlite_fill(path: str, ids: list[int], owner: int) -> None:
    # the store's stored form on SQLite: naive UTC text with microseconds, JSON text
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        # random primary keys touch pages all over the table: keep them in memory
        conn.execute("PRAGMA cache_size=-524288")
        conn.executemany(
            "INSERT INTO jobs (id, job_type, bucket, prefix, params, state, owner_id, "
            "create_time, start_time, complete_time, processed, failed, skipped, bytes_done, "
            "failure_reasons, rate, cancel_requested) "
            "VALUES (?, ?, ?, '', '{}', 'COMPLETE', ?, ?, ?, ?, ?, 0, 0, 0, '[]', 0, 0)",
            (
                (
                    job_id,
                    JOB_TYPE,
                    f"bench-{i % 4}",
                    owner,
                    _naive(BASE_TIME + timedelta(seconds=i)),
                    _naive(BASE_TIME + timedelta(seconds=i)),
                    _naive(BASE_TIME + timedelta(seconds=i + 30)),
                    i % 1000,
                )
                for i, job_id in enumerate(ids)
            ),
        )
        conn.commit()
        conn.execute("PRAGMA synchronous=FULL")
        # a store that grew to this size has statistics; SQLite's planner has no other source
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


def _naive(moment: datetime) -> str:
    return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _postgres_fill(url: str, ids: list[int], owner: int) -> None:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY jobs (id, job_type, bucket, prefix, params, state, owner_id, create_time, "
                "start_time, complete_time, processed, failed, skipped, bytes_done, "
                "failure_reasons, rate, cancel_requested) FROM STDIN"
            ) as copy,
        ):
            for i, job_id in enumerate(ids):
                start = BASE_TIME + timedelta(seconds=i)
                copy.write_row(
                    (
                        job_id,
                        JOB_TYPE,
                        f"bench-{i % 4}",
                        "",
                        "{}",
                        "COMPLETE",
                        owner,
                        start,
                        start,
                        start + timedelta(seconds=30),
                        i % 1000,
                        0,
                        0,
                        0,
                        "[]",
                        0.0,
                        False,
                    )
                )
        conn.commit()
        conn.autocommit = True
        # as autovacuum would have done on a store that grew to this size
        conn.execute("VACUUM ANALYZE jobs")


def fill(url: str, ids: list[int]) -> tuple[float, int]:
    """Schema and admin through the store, then the jobs in bulk; (seconds, admin id)."""
    start = time.perf_counter()
    owner = asyncio.run(_prepare(url))
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        _sqlite_fill(parsed.database, ids, owner)
    else:
        _postgres_fill(url, ids, owner)
    return time.perf_counter() - start, owner


async def _store_latency(url: str, ids: list[int], requests: int) -> dict[str, list[float]]:
    """list_jobs in-process, first page against the page after the middle job (no HTTP)."""
    store = SqlJobStore(url)
    depth = len(ids) // 2
    middle = ids[len(ids) - depth]  # the depth-th newest job
    cursor = JobCursor(BASE_TIME + timedelta(seconds=len(ids) - depth), middle)
    times: dict[str, list[float]] = {}
    try:
        for round_ in range(requests + 5):
            for size in SIZES:
                for name, after in ((f"store first/{size}", None), (f"store deep/{size}", cursor)):
                    began = time.perf_counter()
                    page = await store.list_jobs(after=after, limit=size + 1)
                    elapsed = time.perf_counter() - began
                    first = 0 if after is None else depth
                    if (
                        round_ == 0
                        and [j.id for j in page[:size]] != ids[::-1][first : first + size]
                    ):
                        raise RuntimeError(f"{name}: the store returned the wrong page")
                    if round_ >= 5:
                        times.setdefault(name, []).append(elapsed)
    finally:
        await store.close()
    return times


# --- the server ---------------------------------------------------------------------------


class Server:
    def __init__(self, url: str, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(
            os.environ,
            OBJECTJOBS_DATABASE__URL=url,
            OBJECTJOBS_AUTH__ADMIN_PASSWORD=PASSWORD,
            OBJECTJOBS_WORKER__ENABLED="false",
            # the first session's token must outlive the walk to the deep page on a busy box
            OBJECTJOBS_AUTH__TOKEN_LIFETIME_S="3600",
            # known to the bench so it can issue the deep page token without walking there
            OBJECTJOBS_AUTH__SECRET_KEY=SECRET,
        )
        self.log = data_dir / "server.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "objectjobs",
                    "serve",
                    "--data-dir",
                    str(data_dir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server not healthy within 90 s")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --- latency ------------------------------------------------------------------------------


def page_ids(answer: httpx.Response) -> list[int]:
    return [j["jobId"]["id"] for j in answer.json()["jobs"]]


def walk_to(api: Mapi, ids: list[int], depth: int, result: DbResult) -> str | None:
    """A page token positioned after the ``depth`` newest jobs, each page checked."""
    newest_first = ids[::-1]
    token: str | None = None
    seen = 0
    while seen < depth:
        size = min(WALK_PAGE, depth - seen)
        body: dict[str, Any] = {"pageSize": size}
        if token:
            body["pageToken"] = token
        answer = api.post("jobs/list", body)
        if answer.status_code != 200 or page_ids(answer) != newest_first[seen : seen + size]:
            result.problems.append(
                f"walking: the page at offset {seen:,} (pageSize {size}) is not jobs "
                f"{seen + 1:,}..{seen + size:,} newest-first ({answer.status_code})"
            )
            return None
        token = answer.json()["pageToken"]
        seen += size
    return token


def issue_deep(ids: list[int], depth: int, admin: int) -> str:
    """The token the server issues for the page ending at the ``depth``-th newest job.

    Same code and key as the server's; the scope is what routes_jobs binds for an admin
    listing everyone's jobs without a bucket filter (a mismatch would be answered 400).
    """
    cursor = JobCursor(BASE_TIME + timedelta(seconds=len(ids) - depth), ids[len(ids) - depth])
    scope = {"op": "jobs/list", "caller": admin, "owner": None, "bucket": None}
    return PageTokens(SECRET).issue_job_cursor(cursor, scope)


def measure_latency(
    api: Mapi, cases: dict[str, dict[str, Any]], requests: int
) -> dict[str, list[float]]:
    """Client-side wall time per case, cases interleaved round-robin after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_ in range(requests + 10):
        for name, body in cases.items():
            start = time.perf_counter()
            answer = api.post("jobs/list", body)
            elapsed = time.perf_counter() - start
            if answer.status_code != 200 or len(answer.json()["jobs"]) != body["pageSize"]:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
            if round_ >= 10:
                times[name].append(elapsed)
    return times


def latency(
    api: Mapi, ids: list[int], deep: str, result: DbResult, requests: int
) -> dict[str, list[float]]:
    newest_first = ids[::-1]
    depth = len(ids) // 2
    cases: dict[str, dict[str, Any]] = {}
    for size in SIZES:
        first = api.post("jobs/list", {"pageSize": size})
        if first.status_code != 200 or page_ids(first) != newest_first[:size]:
            raise RuntimeError(f"first page {size}: {first.status_code} {first.text[:300]}")
        cases[f"first/{size}"] = {"pageSize": size}
        answer = api.post("jobs/list", {"pageSize": size, "pageToken": deep})
        if answer.status_code == 200 and page_ids(answer) == newest_first[depth : depth + size]:
            cases[f"deep/{size}"] = {"pageSize": size, "pageToken": deep}
        else:
            got = page_ids(answer)[:1] if answer.status_code == 200 else answer.text[:200]
            result.problems.append(
                f"deep page (pageSize {size}, token after job {depth:,}): expected jobs "
                f"{depth + 1:,}.. starting with id {newest_first[depth]}, got {got} "
                f"({answer.status_code}); {'the first page' if got == newest_first[:1] else ''}"
                " - deep page not measured over HTTP"
            )
    return measure_latency(api, cases, requests)


# --- throughput (a separate client process) -----------------------------------------------


async def _hammer(
    base: str, operation: str, body: dict[str, Any], concurrency: int, duration: float
) -> dict[str, float]:
    api = await asyncio.to_thread(Mapi, base, "admin", PASSWORD)
    headers = {
        "Authorization": f"Bearer {api.token}",
        "X-XSRF-TOKEN": api.xsrf,
        "Cookie": f"XSRF-TOKEN={api.xsrf}; vertx-web.session={api.session}",
    }
    api.close()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = errors = 0
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        # connections are opened before the clock starts
        await asyncio.gather(
            *(
                http.post("/mapi/v1/" + operation, json=body, headers=headers)
                for _ in range(concurrency)
            )
        )
        end = time.perf_counter() + duration

        async def one() -> None:
            nonlocal done, errors
            while time.perf_counter() < end:
                answer = await http.post("/mapi/v1/" + operation, json=body, headers=headers)
                if answer.status_code == 200:
                    done += 1
                else:
                    errors += 1

        start = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*(one() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    return {
        "rps": done / wall,
        "requests": done,
        "errors": errors,
        "wall_s": wall,
        "client_cpu_s": client_cpu,
    }


def _hammer_child(
    base: str, operation: str, body: dict[str, Any], concurrency: int, duration: float, queue: Any
) -> None:
    queue.put(asyncio.run(_hammer(base, operation, body, concurrency, duration)))


def throughput(
    server: Server, operation: str, body: dict[str, Any], concurrency: int, duration: float
) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(
        target=_hammer_child, args=(server.base, operation, body, concurrency, duration, queue)
    )
    cpu0 = server.cpu_s()
    child.start()
    try:
        figures: dict[str, float] = queue.get(timeout=duration + 120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    figures["server_cpu_s"] = server.cpu_s() - cpu0  # includes the child's login
    return figures


# --- one database -------------------------------------------------------------------------


def run_db(name: str, url: str, data_dir: Path, args: argparse.Namespace) -> DbResult:
    result = DbResult(name)
    ids = job_ids(args.jobs, seed=len(name))
    print(f"[{name}] filling {args.jobs} jobs", flush=True)
    result.fill_s, admin = fill(url, ids)
    print(f"[{name}] filled in {result.fill_s:.1f} s", flush=True)
    result.latency = asyncio.run(_store_latency(url, ids, args.requests))
    print(f"[{name}] store latency done; starting server", flush=True)
    server = Server(url, data_dir)
    try:
        api = Mapi(server.base, "admin", PASSWORD)
        try:
            depth = args.jobs // 2
            deep = walk_to(api, ids, depth, result) if args.walk else issue_deep(ids, depth, admin)
            if deep is not None:
                result.latency.update(latency(api, ids, deep, result, args.requests))
            print(f"[{name}] HTTP latency done", flush=True)
        finally:
            api.close()
        # alternated, so drifting load on a shared machine hits both operations alike
        for _ in range(2):
            for op, body in (("jobs/list", {"pageSize": 100}), ("user/info", {})):
                figures = throughput(server, op, body, args.concurrency, args.duration / 2)
                total = result.throughput.setdefault(op, dict.fromkeys(figures, 0.0))
                for key, value in figures.items():
                    total[key] += value
                print(f"[{name}] {op}: {figures['rps']:.1f} req/s", flush=True)
        for total in result.throughput.values():
            total["rps"] = total["requests"] / total["wall_s"]
    finally:
        server.stop()
    return result


# --- report -------------------------------------------------------------------------------


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def shell(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout


def report(results: list[DbResult], args: argparse.Namespace, load: tuple[str, str]) -> str:
    lines = [
        "# jobs/list at depth and under load (bench/api_list.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: `python bench/api_list.py --jobs {args.jobs}"
        f" --db {args.db} --requests {args.requests} --duration {args.duration}"
        f" --concurrency {args.concurrency}`",
        "",
        "## Machine",
        f"- {platform.platform()}, Python {platform.python_version()}, nproc {os.cpu_count()}",
        "- " + shell("grep -m1 'model name' /proc/cpuinfo").strip(),
        f"- memory: {shell('free -h | sed -n 2p').split()[1:3]} (total, used)",
        f"- load average before: `{load[0].strip()}`",
        f"- load average after:  `{load[1].strip()}`",
        "- shared machine, other busy processes: absolute figures are noisy; ratios are the "
        "robust part. Client and server share the same 2 cores.",
        "",
        "## Method",
        f"- {args.jobs:,} jobs (random distinct non-zero int32 ids, increasing start_time, one "
        "owner, 4 buckets, COMPLETE) in a schema made by `SqlJobStore.migrate()`, bulk-loaded "
        "(SQLite: one executemany transaction, synchronous=OFF for the fill; PostgreSQL: "
        "COPY), then ANALYZE / VACUUM ANALYZE as a store grown to this size would have had.",
        "- Server: `python -m objectjobs serve` (worker disabled), default settings, "
        "over HTTP on 127.0.0.1.",
        f"- Deep page: the page token after job {args.jobs // 2:,} (newest first), "
        + (
            f"reached by paging from the top with pageSize {WALK_PAGE:,}, each page checked."
            if args.walk
            else "issued by the bench with the server's own code and key (`PageTokens`, secret set "
            "through OBJECTJOBS_AUTH__SECRET_KEY) for the same scope the server binds; "
            "`--walk` pages there instead (50 pages of 10,000 at 1M jobs: minutes on this box)."
        )
        + " Tokens bind filters and caller, not page size, so one token serves both sizes; "
        "the first answer of every case is checked to hold exactly the expected jobs.",
        f"- Latency: {args.requests} timed requests per case (after 10 warm-up rounds) from one "
        "keep-alive httpx client, cases interleaved round-robin; client-side wall time. "
        "`store …` rows: the same pages through `SqlJobStore.list_jobs` in-process (no HTTP), "
        "run before the server starts.",
        f"- Throughput: a separate process, {args.concurrency} concurrent requests over "
        f"{args.concurrency} keep-alive connections (httpx.AsyncClient) for {args.duration:g} s "
        "per operation, in two alternating halves (list, info, list, info); `jobs/list` "
        "pageSize 100 first page against `user/info` (the baseline: auth + CSRF, one user "
        "lookup). Server CPU from /proc, client CPU from the client's rusage.",
        "",
    ]
    for r in results:
        lines += [f"## {r.name}", "", f"Fill: {r.fill_s:.1f} s.", ""]
        for problem in r.problems:
            lines.append(f"- **PROBLEM**: {problem}")
        if r.problems:
            lines.append("")
        if r.latency:
            lines += ["| case | median ms | p99 ms |", "|---|---|---|"]
            for case, values in r.latency.items():
                lines.append(f"| {case} | {_ms(values, 0.5):.1f} | {_ms(values, 0.99):.1f} |")
            lines.append("")
            for prefix in ("store ", ""):
                for size in SIZES:
                    first_case, deep_case = f"{prefix}first/{size}", f"{prefix}deep/{size}"
                    if deep_case not in r.latency:
                        continue
                    first = statistics.median(r.latency[first_case])
                    deep = statistics.median(r.latency[deep_case])
                    verdict = "met" if deep <= 1.2 * first else "NOT met"
                    where = "in-process store" if prefix else "HTTP"
                    lines.append(
                        f"- {where}, pageSize {size}: deep/first median = "
                        f"{deep / first:.2f} (goal <= 1.2: {verdict})"
                    )
            lines.append("")
        if r.throughput:
            lines += [
                "| operation | req/s | requests | errors | server CPU s | client CPU s |",
                "|---|---|---|---|---|---|",
            ]
            for op, t in r.throughput.items():
                lines.append(
                    f"| {op} | {t['rps']:.1f} | {t['requests']:.0f} | "
                    f"{t['errors']:.0f} | {t['server_cpu_s']:.1f} | "
                    f"{t['client_cpu_s']:.1f} |"
                )
            ratio = r.throughput["jobs/list"]["rps"] / r.throughput["user/info"]["rps"]
            verdict = "met" if ratio >= 0.5 else "NOT met"
            lines += ["", f"- list / user/info = {ratio:.2f} (goal >= 0.5: {verdict})", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--walk",
        action="store_true",
        help="reach the deep page by paging from the top (pageSize 10 000)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "api_list.md")
    args = parser.parse_args()
    if args.jobs < 2 * WALK_PAGE:
        parser.error(f"--jobs must be at least {2 * WALK_PAGE}")
    load_before = shell("uptime")
    results: list[DbResult] = []
    with tempfile.TemporaryDirectory(prefix="oj-bench-list-") as tmp:
        for name in args.db.split(","):
            data_dir = Path(tmp) / name
            data_dir.mkdir()
            if name == "sqlite":
                results.append(run_db(name, f"sqlite:///{data_dir / 'jobs.db'}", data_dir, args))
            elif name == "postgres":
                pg = start_postgres()
                try:
                    results.append(run_db(name, pg.create_database(), data_dir, args))
                finally:
                    pg.stop()
            else:
                parser.error(f"unknown database {name!r}")
            # written after each database, so a run cut short keeps what it measured
            text_out = report(results, args, (load_before, shell("uptime")))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text_out)
    print(text_out)
    print(json.dumps({r.name: r.problems for r in results}))


if __name__ == "__main__":
    main()
