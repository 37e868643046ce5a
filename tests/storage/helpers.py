"""Small helpers shared by the storage conformance tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator

MiB = 1024 * 1024


async def collect(pages: AsyncIterable[list[object]]) -> list[object]:
    out: list[object] = []
    async for page in pages:
        out.extend(page)
    return out


def pattern_block(i: int, size: int = MiB) -> bytes:
    """A deterministic, incompressible-looking block (different for every i)."""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    reps = size // len(seed) + 1
    return (seed * reps)[:size]


async def stream(total: int, piece: int) -> AsyncIterator[bytes]:
    """``total`` bytes in pieces of ``piece`` bytes (odd sizes test re-chunking)."""
    sent, i = 0, 0
    while sent < total:
        n = min(piece, total - sent)
        yield pattern_block(i, n)
        sent += n
        i += 1


async def md5_of_stream(total: int, piece: int) -> str:
    h = hashlib.md5()
    async for chunk in stream(total, piece):
        h.update(chunk)
    return h.hexdigest()


def multipart_etag(data_parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in data_parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(data_parts)}"'


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
