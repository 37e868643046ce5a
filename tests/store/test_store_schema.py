"""Conformance: migrations, the listing index, URLs and error translation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection

from objectjobs.errors import ConfigurationError, JobStoreError, JobStoreUnavailable
from objectjobs.models import User
from objectjobs.store.db import Database, sync_url
from objectjobs.store.interface import JobCursor
from objectjobs.store.rows import jobs_page
from objectjobs.store.schema import metadata
from objectjobs.store.sql import SqlJobStore
from tests.servers import free_port
from tests.store.conftest import make_job


async def test_migrate_twice_is_a_noop(store: SqlJobStore, user: User, store_url: str) -> None:
    job = await make_job(store, user)
    await store.migrate()
    assert await store.get_job(job.id) == job
    db = Database(store_url, pool_size=2)
    try:
        with db.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        assert version == [("0001",)]
    finally:
        await db.dispose()


async def test_unknown_revision_is_a_store_error(store: SqlJobStore, store_url: str) -> None:
    db = Database(store_url, pool_size=2)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await db.dispose()
    with pytest.raises(JobStoreError, match="migration"):
        await store.migrate()


async def test_concurrent_migrations(store_url: str) -> None:
    stores = [SqlJobStore(store_url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.migrate() for s in stores))
        await stores[0].create_user("u", "admin", "h")
        assert [u.name for u in await stores[2].list_users()] == ["u"]
    finally:
        for s in stores:
            await s.close()


async def test_migrated_schema_matches_the_model(store: SqlJobStore, store_url: str) -> None:
    db = Database(store_url, pool_size=2)

    def diff(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))

    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names()) - {"alembic_version"}

    try:
        with db.engine.connect() as conn:
            assert tables(conn) == set(metadata.tables)
            assert diff(conn) == []
    finally:
        await db.dispose()


async def test_keyset_page_uses_the_index(store: SqlJobStore, user: User, store_url: str) -> None:
    """A keyset page is an index range scan starting at the cursor, at any depth."""
    for i in range(20):
        await make_job(store, user, f"b{i}")
    cursor = JobCursor(datetime.now(UTC), 0)
    db = Database(store_url, pool_size=2)
    sqlite = db.dialect == "sqlite"

    # run the store's own statement (with its bound parameters) under EXPLAIN
    @event.listens_for(db.engine, "before_cursor_execute", retval=True)
    def explain(
        _c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool
    ) -> tuple[str, Any]:
        if statement.lstrip().upper().startswith("SELECT JOBS."):
            statement = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement
        return statement, params

    try:
        with db.engine.connect() as conn:
            if not sqlite:
                # a 20-row table is cheaper to scan whole: forbid that to see what the
                # planner does with the index once the table is large
                conn.execute(text("SET enable_seqscan = off"))
            for owner_id, bucket in ((None, None), (user.id, None), (None, "b3")):
                query = jobs_page(after=cursor, limit=10, owner_id=owner_id, bucket=bucket)
                rows = conn.execute(query).all()
                plan = "\n".join(str(r[-1]) for r in rows)
                if sqlite:
                    assert "USING INDEX ix_jobs_" in plan, plan
                    assert "TEMP B-TREE" not in plan, plan
                else:
                    # the keyset condition bounds the index scan, it is not a filter
                    conds = [ln for ln in plan.splitlines() if "Index Cond" in ln]
                    assert any("ROW(start_time, id) <" in ln for ln in conds), plan
                    assert "ix_jobs_" in plan, plan
    finally:
        await db.dispose()


def test_urls_map_to_async_drivers(tmp_path: Path) -> None:
    assert sync_url(f"sqlite:///{tmp_path}/x.db").drivername == "sqlite+pysqlite"
    for url in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgres://u@h/db"):
        assert sync_url(url).drivername == "postgresql+psycopg"
    with pytest.raises(ConfigurationError):
        sync_url("mysql://u@h/db")
    for bad in ("not a url", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ConfigurationError):
            sync_url(bad)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_unreachable_database(kind: str, tmp_path: Path) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path}/missing-dir/jobs.db"
    else:
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    store = SqlJobStore(url)
    try:
        with pytest.raises(JobStoreUnavailable):
            await store.ping()
        with pytest.raises(JobStoreUnavailable):
            await store.migrate()
    finally:
        await store.close()
        await store.close()  # idempotent
