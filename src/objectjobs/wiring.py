"""Where concrete drivers are chosen: the app factory and the CLI build everything here.

The core never imports a driver; this module is the one place (with the storage factory)
that names them.
"""

from __future__ import annotations

from objectjobs.settings import Settings
from objectjobs.storage.factory import open_storage
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from objectjobs.store.sql import SqlJobStore


async def open_store(settings: Settings, *, migrate: bool = True) -> JobStore:
    """Open the job store named by ``database.url`` and bring its schema up to date."""
    if not settings.database.url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqlJobStore(settings.database_url, pool_size=settings.database.pool_size)
    if migrate:
        await store.migrate()
    return store


def open_default_storage(settings: Settings) -> Storage:
    """The storage the jobs' buckets live on (``[storage]``)."""
    if settings.storage.kind == "local":
        settings.storage_root.mkdir(parents=True, exist_ok=True)
    return open_storage(settings.storage, root=settings.storage_root)


def open_target_storage(settings: Settings, name: str) -> Storage:
    """A remote replication endpoint from ``[targets.<name>]``."""
    return open_storage(settings.targets[name], root=None)
