"""copying's verification of server-side copies (one by one and batched) on the local
driver."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from objectjobs.copying import (
    ByteBudget,
    CopyOptions,
    Endpoint,
    batches_copies,
    copy_version,
    copy_versions,
)
from objectjobs.errors import ObjectNotFound, StorageError
from objectjobs.storage.interface import CopyRequest, ObjectInfo, WriteResult
from objectjobs.storage.local import LocalStorage


class _NoHead(LocalStorage):
    """Fails the test if a HEAD is asked; can lie about the size a copy wrote."""

    lie: int | None = None

    async def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        raise AssertionError("no HEAD expected")

    async def copy(self, *args: Any, **kwargs: Any) -> WriteResult:
        result = await super().copy(*args, **kwargs)
        return result if self.lie is None else dataclasses.replace(result, size=self.lie)

    async def copy_many(
        self, src_bucket: str, dst_bucket: str, items: Sequence[CopyRequest]
    ) -> list[WriteResult | StorageError]:
        results = await super().copy_many(src_bucket, dst_bucket, items)
        if self.lie is None:
            return results
        return [
            dataclasses.replace(r, size=self.lie) if isinstance(r, WriteResult) else r
            for r in results
        ]


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


async def test_batched_copies_verify_each_and_return_failures_in_place(tmp_path: Path) -> None:
    s, version = await _foreign_file(tmp_path)
    src, dst = Endpoint(s, "src"), Endpoint(s, "dst")
    assert batches_copies(src, dst, CopyOptions())
    assert not batches_copies(src, dst, CopyOptions(keep_lock=True))  # needs a HEAD each
    gone = dataclasses.replace(version, key="gone")
    got = await copy_versions(src, [version, gone, version], dst)
    assert got[0] == got[2] == version.size
    assert isinstance(got[1], ObjectNotFound)
    s.lie = version.size + 1
    [bad] = await copy_versions(src, [version], dst)
    assert isinstance(bad, StorageError) and "did not verify" in bad.message


async def test_a_known_etag_does_not_excuse_a_wrong_size(tmp_path: Path) -> None:
    s, _ = await _foreign_file(tmp_path)
    await s.put("src", "mine", b"12345")
    [mine] = [v async for page in s.list_objects("src") for v in page if v.key == "mine"]
    assert mine.etag is not None  # from the sidecar: the copy's ETag will equal it
    s.lie = 4
    with pytest.raises(StorageError, match="size 4 != 5"):
        await copy_version(
            Endpoint(s, "src"), mine, Endpoint(s, "dst"), CopyOptions(), ByteBudget(1 << 20)
        )
