"""Webhook delivery: an HTTP POST of the event body per event, over kept-alive connections.

Each request carries ``Content-Type: application/json``, the configured ``headers`` (e.g. an
``Authorization`` header) and the per-event headers the caller gives. With ``hmac_secret``
set it also carries ``X-ObjectJobs-Signature: sha256=<hex>``, the lowercase hex HMAC-SHA256
of the exact body bytes keyed with the secret (UTF-8), so the receiver can check the body
came from us unchanged (compare with ``hmac.compare_digest``).

Outcomes: any 2xx is delivered; 429, 5xx, timeouts and connection errors are retryable;
any other answer (other 4xx, 3xx) is permanent, and so is a URL or header that cannot make
a request. The HTTP client is :mod:`objectjobs.notify.http` (why: see there).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Mapping

from objectjobs.errors import DeliveryError
from objectjobs.notify.http import HttpOrigin
from objectjobs.notify.interface import DeliveryTarget
from objectjobs.settings import NotifyTargetSettings

SIGNATURE_HEADER = "X-ObjectJobs-Signature"


def sign(secret: str, body: bytes) -> str:
    """The value of the signature header for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookTarget(DeliveryTarget):
    kind = "webhook"

    def __init__(
        self,
        settings: NotifyTargetSettings,
        *,
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = settings.url
        self._secret = settings.hmac_secret.get_secret_value() if settings.hmac_secret else None
        self._origin: HttpOrigin | None = None
        self._unusable: DeliveryError | None = None
        try:
            self._origin = HttpOrigin(
                settings.url,
                headers={"Content-Type": "application/json", **settings.headers},
                timeout_s=settings.timeout_s,
                max_connections=max_connections,
                ssl_context=ssl_context,
            )
        except DeliveryError as exc:
            # each event fails with the reason (a permanent error) rather than the job
            self._unusable = exc

    async def deliver(self, event_body: bytes, *, headers: Mapping[str, str]) -> None:
        if self._origin is None:
            assert self._unusable is not None
            raise self._unusable
        if self._secret is not None:
            headers = {**headers, SIGNATURE_HEADER: sign(self._secret, event_body)}
        response = await self._origin.post(event_body, headers)
        status = response.status
        if 200 <= status < 300:
            return
        retryable = status == 429 or status >= 500
        raise DeliveryError(
            f"webhook {self.url} answered HTTP {status}",
            retryable=retryable,
            details=response.body[:200].decode("utf-8", errors="replace"),
        )

    async def close(self) -> None:
        if self._origin is not None:
            await self._origin.close()
