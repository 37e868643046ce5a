"""The contract of a delivery target: deliver one event body, at least once, or say why not."""

from __future__ import annotations

import abc
from collections.abc import Mapping


class DeliveryTarget(abc.ABC):
    """Sends event bodies to one destination. Safe to call concurrently.

    ``deliver`` returns once the destination has accepted the body (a 2xx answer, a broker
    confirm). Otherwise it raises ``objectjobs.errors.DeliveryError`` whose ``retryable``
    says whether trying again may help (timeouts, connection loss, throttling, 5xx) or not
    (the destination refused the event as such). No other exception escapes it.
    """

    kind: str = ""

    @abc.abstractmethod
    async def deliver(self, event_body: bytes, *, headers: Mapping[str, str]) -> None:
        """Deliver ``event_body`` (a JSON document) with extra ``headers`` (HTTP headers,
        AMQP message headers)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the target is not used afterwards."""

    async def __aenter__(self) -> DeliveryTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
