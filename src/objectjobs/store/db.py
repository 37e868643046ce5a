"""Engines and transactions of the SQL job store: URLs, SQLite pragmas, writer
serialisation, retries and the translation of database errors into ``objectjobs.errors``."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Table, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from objectjobs.errors import ConfigurationError, JobStoreError, JobStoreUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic's op/context proxies are module globals: one upgrade at a time per process
_ALEMBIC_LOCK = threading.Lock()
# pg_advisory_xact_lock key serialising migrations of nodes starting at once ("objjobs")
MIGRATION_LOCK = 0x6F626A6A6F6273
SQLITE_BUSY_TIMEOUT_S = 10.0
# Deadlocks and serialisation failures are resolved by running the transaction again.
RETRY_SQLSTATES = frozenset({"40001", "40P01"})
MAX_ATTEMPTS = 5
# SQLite readers run beside its one writer (WAL); more would only queue on the GIL
SQLITE_READERS = 4


def sync_url(url: str) -> URL:
    """Map a configured database URL to the driver the store runs it on (the standard
    library's sqlite3, psycopg 3)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise ConfigurationError(f"invalid database URL: {e}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # every pooled connection would see its own empty database
            raise ConfigurationError("an in-memory SQLite job store is not supported")
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ConfigurationError(f"unsupported database {backend!r}: use sqlite or postgresql")


def conflict_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT supporting ON CONFLICT in the given dialect (both spell it the same)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class Database:
    """One engine, the threads that run its transactions, and the rules for running them.

    A transaction is a plain synchronous function of a connection, run whole on one of the
    store's threads: one thread hop per transaction. SQLAlchemy's asyncio layer hopped to
    the driver's thread and back for every statement, fetch and commit, and cost ~1.1 ms
    of CPU for a one-row SELECT against ~0.27 ms this way (here, on SQLite); the hops also
    queued behind whatever other thread held the GIL (a listing's walk).

    Writes on SQLite are serialised in-process by their one thread and across processes
    (the CLI adding a user next to a running server) by ``BEGIN IMMEDIATE`` with a busy
    timeout, so a write never fails half-way with "database is locked"; reads run on other
    threads beside them (WAL).
    """

    def __init__(self, url: str, *, pool_size: int) -> None:
        self.url = sync_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        threads = max(1, pool_size)
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            # a local file never drops a connection: no ping round trip per checkout; a
            # pooled connection serves whichever store thread checks it out
            readers = min(threads, SQLITE_READERS)
            kwargs.update(
                pool_size=readers + 1,
                max_overflow=0,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            )
            self._reads = ThreadPoolExecutor(readers, thread_name_prefix="jobstore-read")
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="jobstore-write")
        else:
            kwargs.update(
                pool_pre_ping=True,
                pool_size=threads,
                max_overflow=0,
                connect_args={"connect_timeout": 10},
            )
            self._reads = self._writes = ThreadPoolExecutor(threads, thread_name_prefix="jobstore")
        self.engine: Engine = create_engine(self.url, **kwargs)
        self._writer = self.engine.execution_options(objectjobs_write=True)
        if self.sqlite:
            self._install_sqlite_hooks()

    def _install_sqlite_hooks(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # the driver's own implicit BEGIN is off: the "begin" hook below issues ours
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in (
                "journal_mode=WAL",
                f"busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}",
                "synchronous=NORMAL",
                "foreign_keys=ON",
            ):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("objectjobs_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def run(self, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run ``work`` in one transaction on a store thread (retried on deadlock),
        translating errors.

        A caller cancelled meanwhile does not cut the transaction short: it runs to its
        end on its thread (committed, or rolled back on an error) and the cancellation goes
        on once it has. A transaction abandoned half-way would keep its connection, and on
        SQLite the database's write lock, until it was collected.
        """
        loop = asyncio.get_running_loop()
        executor = self._writes if write else self._reads
        transaction = loop.run_in_executor(executor, self._run, work, write)
        try:
            return await asyncio.shield(transaction)
        except asyncio.CancelledError:
            await asyncio.wait([transaction])
            if not transaction.cancelled():
                transaction.exception()  # the caller is gone: its outcome is nobody's news
            raise

    def _run(self, work: Callable[[Connection], T], write: bool) -> T:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with (self._writer if write else self.engine).begin() as conn:
                    return work(conn)
            except exc.DBAPIError as e:
                if _sqlstate(e) in RETRY_SQLSTATES and attempt < MAX_ATTEMPTS:
                    log.info("job store transaction retried after %s", _sqlstate(e))
                    time.sleep(0.01 * attempt)
                    continue
                raise translate(e) from e
            except (exc.SQLAlchemyError, OSError) as e:
                raise translate(e) from e
        raise AssertionError("unreachable")

    async def migrate(self) -> None:
        """Upgrade the schema to head, in a thread on a short-lived synchronous engine:
        Alembic's ``op``/``context`` proxies are process-global, so upgrades in one process
        take turns (``_ALEMBIC_LOCK``); across nodes, PostgreSQL's advisory lock orders them."""
        try:
            await asyncio.to_thread(self._upgrade)
        except CommandError as e:  # e.g. the database is at a revision this code lacks
            raise JobStoreError(f"job store migration failed: {e}") from e
        except (exc.SQLAlchemyError, OSError) as e:
            raise translate(e) from e

    def _upgrade(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        driver = "sqlite" if self.sqlite else "postgresql+psycopg"
        connect_args: dict[str, Any] = (
            {"timeout": SQLITE_BUSY_TIMEOUT_S} if self.sqlite else {"connect_timeout": 10}
        )
        engine = create_engine(
            self.url.set(drivername=driver), poolclass=NullPool, connect_args=connect_args
        )
        try:
            with _ALEMBIC_LOCK, engine.connect() as conn:
                if self.sqlite:
                    # take SQLite's write lock up front: another process migrating at the
                    # same moment waits (busy timeout) instead of failing half-way
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                    conn.commit()
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.begin()
                    # released at commit; a node starting meanwhile waits, then finds head
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        finally:
            engine.dispose()

    async def dispose(self) -> None:
        """Let running transactions end, then close the threads and the connections."""
        await asyncio.to_thread(self._dispose)

    def _dispose(self) -> None:
        self._reads.shutdown(wait=True)
        self._writes.shutdown(wait=True)
        self.engine.dispose()


def _sqlstate(e: exc.DBAPIError) -> str | None:
    return getattr(e.orig, "sqlstate", None)


def translate(e: BaseException) -> JobStoreError:
    """A database or driver exception as the job store error it means."""
    message = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
    if isinstance(e, exc.DBAPIError) and _sqlstate(e) in RETRY_SQLSTATES:
        return JobStoreError(f"job store transaction conflict: {message}")
    if isinstance(e, exc.OperationalError | exc.InterfaceError | exc.TimeoutError | OSError):
        return JobStoreUnavailable(f"job store unavailable: {message}")
    if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
        return JobStoreUnavailable(f"job store connection lost: {message}")
    return JobStoreError(f"job store error: {message}")
