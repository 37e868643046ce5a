"""Choosing the storage driver from settings: the one place naming the concrete classes."""

from __future__ import annotations

from pathlib import Path

from objectjobs.errors import ConfigurationError
from objectjobs.settings import S3EndpointSettings, StorageSettings
from objectjobs.storage.interface import Capabilities, Storage
from objectjobs.storage.local import LocalStorage
from objectjobs.storage.s3 import S3Storage


def open_storage(
    settings: StorageSettings | S3EndpointSettings,
    *,
    root: Path | None = None,
    capabilities: Capabilities | None = None,
) -> Storage:
    """A driver for ``settings``: ``StorageSettings`` of kind local (``root``, or
    ``settings.root``) or s3, or an ``S3EndpointSettings`` (a replication target).

    ``capabilities`` overrides what an S3 endpoint is assumed to support (full S3 by
    default); it has no meaning for the local driver.
    """
    if isinstance(settings, StorageSettings) and settings.kind == "local":
        local_root = root or settings.root
        if local_root is None:
            raise ConfigurationError("storage.root is required for the local storage driver")
        return LocalStorage(local_root, copy_batches=settings.copy_threads)
    return S3Storage(settings, capabilities=capabilities)
