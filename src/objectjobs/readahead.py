"""Read one item ahead of an async iterator, so the producer's waiting (a listing request on
its way, a directory walk in a thread) overlaps the consumer's work on the item before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def read_ahead(source: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """Yield ``source``'s items in order, fetching the next one while the caller works on the
    current one. Errors surface where the item would have; closing the reader stops the
    fetch in flight and closes ``source``."""
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(source))
    try:
        while True:
            try:
                item = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(source))
            yield item
    finally:
        if not pending.done():
            pending.cancel()
            # the source must not be closed while it still runs the cancelled fetch
            await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()  # retrieved: an error of the abandoned fetch is not news
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
