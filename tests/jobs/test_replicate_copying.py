"""copying.copy_version's verification of server-side copies on the local driver."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from objectjobs.copying import ByteBudget, CopyOptions, Endpoint, copy_version
from objectjobs.errors import StorageError
from objectjobs.storage.interface import ObjectInfo, WriteResult
from objectjobs.storage.local import LocalStorage


class _NoHead(LocalStorage):
    """Fails the test if a HEAD is asked; can lie about the size a copy wrote."""

    lie: int | None = None

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        raise AssertionError("no HEAD expected")

    async def copy(self, *args: Any, **kwargs: Any) -> WriteResult:
        result = await super().copy(*args, **kwargs)
        return result if self.lie is None else dataclasses.replace(result, size=self.lie)


async def _foreign_file(root: Path) -> tuple[_NoHead, Any]:
    s = _NoHead(root)
    await s.create_bucket("src")
    await s.create_bucket("dst")
    (root / "src" / "theirs").write_bytes(b"written by another tool")
    [version] = [v async for page in s.list_objects("src") for v in page]
    assert version.etag is None  # the listing cannot vouch for its content
    return s, version


async def test_copy_verified_by_the_size_the_driver_wrote(tmp_path: Path) -> None:
    s, version = await _foreign_file(tmp_path)
    budget = ByteBudget(1 << 20)
    n = await copy_version(Endpoint(s, "src"), version, Endpoint(s, "dst"), CopyOptions(), budget)
    assert n == version.size
    assert (tmp_path / "dst" / "theirs").read_bytes() == b"written by another tool"


async def test_copy_of_the_wrong_size_does_not_verify(tmp_path: Path) -> None:
    s, version = await _foreign_file(tmp_path)
    s.lie = version.size + 1
    with pytest.raises(StorageError, match="did not verify"):
        await copy_version(
            Endpoint(s, "src"), version, Endpoint(s, "dst"), CopyOptions(), ByteBudget(1 << 20)
        )
