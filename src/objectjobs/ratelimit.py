"""A token bucket for ``objectsPerSecond``; the engine divides a job's rate among the
workers currently running its tasks."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Allows ``rate`` acquisitions per second on average, with a burst of one second."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = min(rate, 1.0)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, rate: float) -> None:
        self._rate = rate

    async def acquire(self, n: int = 1) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(
                    max(self._rate, 1.0), self._tokens + (now - self._stamp) * self._rate
                )
                self._stamp = now
                if self._tokens >= n or (n > self._rate and self._tokens >= self._rate):
                    self._tokens -= n
                    return
                await asyncio.sleep((n - self._tokens) / self._rate)
