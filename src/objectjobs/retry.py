"""Retries of transient storage errors with exponential backoff and full jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from objectjobs.errors import DeliveryError, StorageError

T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError | DeliveryError) and exc.retryable


def backoff_delay(attempt: int, base_s: float, cap_s: float = 10.0) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap_s, base_s * (2**attempt)))


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    base_s: float,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Await ``call()``; on a retryable error try again up to ``retries`` more times, then
    re-raise the last error. Permanent errors are raised at once."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_retryable(exc) or attempt >= retries:
                raise
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(backoff_delay(attempt, base_s))
            attempt += 1
