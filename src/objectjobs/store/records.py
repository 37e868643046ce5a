"""Results, usage records and ledgers of the SQL job store (a part of ``SqlJobStore``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.engine import Connection

from objectjobs.errors import InvalidRequest
from objectjobs.models import Outcome, ResultRecord, UsageRecord
from objectjobs.store.db import Database, conflict_insert
from objectjobs.store.rows import to_result, to_usage
from objectjobs.store.schema import jobs, results
from objectjobs.store.schema import ledger as ledger_t
from objectjobs.store.schema import usage as usage_t

_CHUNK = 500  # bound parameters per IN list, well under both databases' limits


class ResultsAndLedgers:
    """The ``JobStore`` methods over results, usage and ledgers."""

    _db: Database
    _clock: Callable[[], datetime]

    # --- results and usage ---------------------------------------------------------------

    async def list_results(
        self,
        job_id: int,
        *,
        outcome: str | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[tuple[int, ResultRecord]]:
        stmt = select(results).where(results.c.job_id == job_id)
        if outcome is not None:
            if outcome not in Outcome.__members__:
                raise InvalidRequest(f"unknown outcome {outcome!r}")
            stmt = stmt.where(results.c.outcome == outcome)
        if after is not None:
            stmt = stmt.where(results.c.seq > after)
        stmt = stmt.order_by(results.c.seq).limit(limit)

        def work(conn: Connection) -> list[tuple[int, ResultRecord]]:
            return [(int(r["seq"]), to_result(r)) for r in conn.execute(stmt).mappings()]

        return await self._db.run(work, write=False)

    async def failed_keys(self, bucket: str, job_type: str) -> set[tuple[str, str | None]]:
        failed = func.max(case((results.c.outcome == Outcome.FAILED.value, results.c.seq)))
        fixed = func.max(
            case(
                (
                    results.c.outcome.in_([Outcome.SUCCEEDED.value, Outcome.SKIPPED.value]),
                    results.c.seq,
                )
            )
        )
        # one pass over the jobs' results: a pair is still failed if its latest failure is
        # newer than its latest success or skip (result seqs grow across jobs)
        stmt = (
            select(results.c.key, results.c.version_id)
            .join(jobs, jobs.c.id == results.c.job_id)
            .where(jobs.c.bucket == bucket, jobs.c.job_type == job_type)
            .group_by(results.c.key, results.c.version_id)
            .having(failed > func.coalesce(fixed, 0))
        )

        def work(conn: Connection) -> set[tuple[str, str | None]]:
            return {(k, v) for k, v in conn.execute(stmt)}

        return await self._db.run(work, write=False)

    async def get_usage(self, bucket: str) -> UsageRecord | None:
        def work(conn: Connection) -> UsageRecord | None:
            stmt = select(usage_t).where(usage_t.c.bucket == bucket)
            row = conn.execute(stmt).mappings().first()
            return to_usage(row) if row is not None else None

        return await self._db.run(work, write=False)

    async def put_usage(
        self, bucket: str, usage: dict[str, Any], job_id: int | None
    ) -> UsageRecord:
        record = UsageRecord(
            bucket=bucket, usage=dict(usage), update_time=self._clock(), job_id=job_id
        )

        def work(conn: Connection) -> None:
            stmt = conflict_insert(self._db.dialect, usage_t).values(
                bucket=bucket, usage=record.usage, update_time=record.update_time, job_id=job_id
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["bucket"],
                    set_={
                        "usage": record.usage,
                        "update_time": record.update_time,
                        "job_id": job_id,
                    },
                )
            )

        await self._db.run(work, write=True)
        return record

    async def list_usage(self) -> list[UsageRecord]:
        def work(conn: Connection) -> list[UsageRecord]:
            rows = conn.execute(select(usage_t).order_by(usage_t.c.bucket)).mappings()
            return [to_usage(r) for r in rows]

        return await self._db.run(work, write=False)

    # --- ledgers -------------------------------------------------------------------------

    async def ledger_missing(self, ledger: str, keys: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(keys))

        def work(conn: Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                found.update(
                    conn.scalars(
                        select(ledger_t.c.key).where(
                            ledger_t.c.ledger == ledger, ledger_t.c.key.in_(chunk)
                        )
                    )
                )
            return set(wanted) - found

        return await self._db.run(work, write=False)

    async def ledger_add(self, ledger: str, keys: Sequence[str]) -> None:
        rows = [{"ledger": ledger, "key": k} for k in dict.fromkeys(keys)]
        if not rows:
            return

        def work(conn: Connection) -> None:
            stmt = conflict_insert(self._db.dialect, ledger_t).on_conflict_do_nothing(
                index_elements=["ledger", "key"]
            )
            conn.execute(stmt, rows)

        await self._db.run(work, write=True)

    async def ledger_clear(self, ledger: str, prefix: str = "") -> None:
        stmt = delete(ledger_t).where(ledger_t.c.ledger == ledger)
        if prefix:
            # not LIKE: SQLite's LIKE ignores case and both treat % and _ as wildcards
            stmt = stmt.where(func.substr(ledger_t.c.key, 1, len(prefix)) == prefix)

        def work(conn: Connection) -> None:
            conn.execute(stmt)

        await self._db.run(work, write=True)
