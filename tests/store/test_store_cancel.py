"""A caller cancelled in the middle of a transaction never leaves it open.

Workers are cancelled at any await (a job cancelled, a lease lost, a shutdown), often in
the middle of a checkpoint. A transaction abandoned half-way would stay checked out with
its transaction open; on SQLite that held the write lock, and every later write of every
worker failed with "database is locked" (as it did with SQLAlchemy's async connections).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Connection

from objectjobs.models import User
from objectjobs.store.schema import users
from objectjobs.store.sql import SqlJobStore

STATEMENTS = 400


@pytest.mark.parametrize("cancel_after", [1, 7, 60, 250])
@pytest.mark.parametrize("cancels", [1, 5])
async def test_a_cancelled_write_ends_its_transaction(
    store: SqlJobStore, store_url: str, user: User, cancel_after: int, cancels: int
) -> None:
    done = 0
    reached = asyncio.Event()
    loop = asyncio.get_running_loop()

    def many_statements(conn: Connection) -> None:  # on a store thread
        nonlocal done
        for i in range(STATEMENTS):
            conn.execute(update(users).where(users.c.id == user.id).values(role=f"role-{i}"))
            done += 1
            if done == cancel_after:
                loop.call_soon_threadsafe(reached.set)

    caller = asyncio.create_task(store._db.run(many_statements, write=True))
    await reached.wait()
    # lands while a statement is on its way to the database; cancelled again (a worker
    # stopping its tasks while their job is being cancelled) it lands in the clean-up too
    for _ in range(cancels):
        caller.cancel()
        await asyncio.sleep(0)
    with pytest.raises(asyncio.CancelledError):
        await caller
    # the transaction is not abandoned: it runs to its end and releases the database (and
    # the row), so another connection writes the same row at once, not after the busy
    # timeout or never ...
    other = SqlJobStore(store_url)

    def touch(conn: Connection) -> None:
        conn.execute(update(users).where(users.c.id == user.id).values(password_hash="h2"))

    try:
        async with asyncio.timeout(5):
            await other._db.run(touch, write=True)
    finally:
        await other.close()
    # ... after every statement of the cancelled caller's work
    assert done == STATEMENTS
    stored = await store.get_user(user.id)
    assert stored is not None and stored.role == f"role-{STATEMENTS - 1}"
