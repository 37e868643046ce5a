"""OSErrors of the local driver become our storage errors at its boundary."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from objectjobs.errors import AccessDenied, StorageError, TransientStorageError
from objectjobs.storage import local_files as lf
from objectjobs.storage.interface import CopyRequest, WriteResult
from objectjobs.storage.local import LocalStorage

LONG_KEY = "dir/" + "x" * 300  # a path component over the 255 bytes ext4 and tmpfs allow


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [
        (errno.ENOSPC, TransientStorageError, True),
        (errno.EIO, TransientStorageError, True),
        (errno.EACCES, AccessDenied, False),
        (errno.EROFS, AccessDenied, False),
        (errno.ENAMETOOLONG, StorageError, False),
        (errno.ELOOP, StorageError, False),
    ],
)
def test_each_errno_gets_its_kind_and_the_message_names_the_key_not_the_path(
    code: int, kind: type[StorageError], retryable: bool
) -> None:
    exc = OSError(code, "what the kernel said", "/srv/data/buckets/b/the/key")
    err = lf.os_error(exc, "the/key")
    assert type(err) is kind
    assert err.retryable is retryable
    assert "'the/key'" in err.message and errno.errorcode[code] in err.message
    assert "/srv/data" not in err.message


async def test_a_key_too_long_for_the_file_system_is_a_storage_error(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    await s.create_bucket("bkt")
    with pytest.raises(StorageError, match="ENAMETOOLONG") as put:
        await s.put("bkt", LONG_KEY, b"body")
    assert not put.value.retryable
    with pytest.raises(StorageError, match="ENAMETOOLONG"):
        await s.head("bkt", LONG_KEY)


async def test_one_copy_failing_in_the_os_fails_that_copy_only(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    for bucket in ("src", "dst"):
        await s.create_bucket(bucket)
    await s.put("src", "a", b"first")
    await s.put("src", "b", b"second")
    got = await s.copy_many(
        "src", "dst", [CopyRequest("a", "a"), CopyRequest("a", LONG_KEY), CopyRequest("b", "b")]
    )
    assert isinstance(got[0], WriteResult) and isinstance(got[2], WriteResult)
    assert isinstance(got[1], StorageError) and "ENAMETOOLONG" in got[1].message
    assert repr(LONG_KEY) in got[1].message
    assert (tmp_path / "dst" / "a").read_bytes() == b"first"
    assert (tmp_path / "dst" / "b").read_bytes() == b"second"
    assert not list((tmp_path / ".objectjobs" / "tmp").iterdir())  # no temp file left
