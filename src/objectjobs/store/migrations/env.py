"""Alembic environment of the job store.

Migrations run only through ``SqlJobStore.migrate()``, which opens a connection of its
own, takes the migration lock and hands that connection over in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from objectjobs.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the job store migrations through SqlJobStore.migrate()")

# batch mode lets later migrations alter tables on SQLite (which cannot ALTER much)
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
