"""Conformance: Object Lock retention and legal hold (drivers declaring object_lock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from objectjobs.errors import AccessDenied, NotSupported
from objectjobs.storage.interface import ObjectMeta
from tests.storage.conftest import Backend


async def test_retention_and_legal_hold(backend: Backend) -> None:
    backend.require("object_lock")
    s = backend.storage
    bucket = await backend.new_bucket(object_lock=True)
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    meta = ObjectMeta(
        content_type="text/plain",
        object_lock_mode="GOVERNANCE",
        object_lock_retain_until=until,
        legal_hold=True,
    )
    w = await s.put(bucket, "locked", b"keep me", meta=meta)
    info = await s.head(bucket, "locked")
    assert info.meta.object_lock_mode == "GOVERNANCE"
    assert info.meta.object_lock_retain_until == until
    assert info.meta.legal_hold is True
    with pytest.raises(AccessDenied):
        await s.delete(bucket, "locked", w.version_id)
    # copies keep retention and hold when given them
    await s.copy(bucket, "locked", bucket, "copy", meta=meta)
    copied = await s.head(bucket, "copy")
    assert (copied.meta.object_lock_mode, copied.meta.legal_hold) == ("GOVERNANCE", True)


async def test_head_without_object_lock(backend: Backend) -> None:
    s = backend.storage
    bucket = await backend.new_bucket()
    await s.put(bucket, "plain", b"x")
    info = await s.head(bucket, "plain")
    assert info.meta.object_lock_mode is None
    assert info.meta.object_lock_retain_until is None
    assert not info.meta.legal_hold


async def test_object_lock_refused_without_capability(backend: Backend) -> None:
    if backend.caps.object_lock:
        pytest.skip(f"{backend.name} driver declares object_lock=True")
    bucket = await backend.new_bucket()
    with pytest.raises(NotSupported):
        await backend.storage.put(bucket, "k", b"x", meta=ObjectMeta(legal_hold=True))
