"""read_ahead: order, overlap of producer and consumer, errors in place, clean close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from objectjobs.readahead import read_ahead


class Source:
    """An async generator that logs when each item is asked for, produced, and closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.log: list[str] = []
        self.closed = False

    async def items(self) -> AsyncIterator[int]:
        try:
            for i in range(self.count):
                self.log.append(f"fetch {i}")
                await asyncio.sleep(0.01)
                if i == self.fail_at:
                    raise OSError(f"item {i} failed")
                yield i
        finally:
            self.closed = True


async def test_items_arrive_in_order_and_the_next_is_fetched_during_the_work() -> None:
    source = Source(4)
    seen = []
    async for item in read_ahead(source.items()):
        source.log.append(f"work {item}")
        await asyncio.sleep(0.03)  # the next fetch (0.01 s) completes meanwhile
        source.log.append(f"done {item}")
        seen.append(item)
    assert seen == [0, 1, 2, 3]
    # item n+1 was asked for before the work on item n was done
    for n in range(3):
        assert source.log.index(f"fetch {n + 1}") < source.log.index(f"done {n}")
    assert source.closed


async def test_an_error_surfaces_after_the_items_before_it() -> None:
    source = Source(5, fail_at=2)
    seen = []
    with pytest.raises(OSError, match="item 2 failed"):
        async for item in read_ahead(source.items()):
            seen.append(item)
    assert seen == [0, 1]
    assert source.closed


async def test_leaving_early_stops_the_fetch_in_flight_and_closes_the_source() -> None:
    others = asyncio.all_tasks()  # the session's loop may run other tests' leftovers
    source = Source(100)
    reader = read_ahead(source.items())
    async for item in reader:
        if item == 1:
            break
    await reader.aclose()
    assert source.closed
    assert "fetch 3" not in source.log  # nothing fetched beyond the one read ahead
    assert not asyncio.all_tasks() - others  # no fetch left running
