"""Webhook delivery: an HTTP POST of the event body per event, over kept-alive connections.

Each request carries ``Content-Type: application/json``, the configured ``headers`` (e.g. an
``Authorization`` header) and the per-event headers the caller gives. With ``hmac_secret``
set it also carries ``X-ObjectJobs-Signature: sha256=<hex>``, the lowercase hex HMAC-SHA256
of the exact body bytes keyed with the secret (UTF-8), so the receiver can check the body
came from us unchanged (compare with ``hmac.compare_digest``).

Outcomes: any 2xx is delivered; 429, 5xx, timeouts and connection errors are retryable;
any other answer (other 4xx, 3xx) is permanent.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Mapping

import httpx

from objectjobs.errors import DeliveryError
from objectjobs.notify.interface import DeliveryTarget
from objectjobs.settings import NotifyTargetSettings

SIGNATURE_HEADER = "X-ObjectJobs-Signature"


def sign(secret: str, body: bytes) -> str:
    """The value of the signature header for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookTarget(DeliveryTarget):
    kind = "webhook"

    def __init__(self, settings: NotifyTargetSettings, *, max_connections: int = 64) -> None:
        self.url = settings.url
        self._secret = settings.hmac_secret.get_secret_value() if settings.hmac_secret else None
        headers = {"Content-Type": "application/json", **settings.headers}
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # small requests written in two parts (head, body) must not wait for an ACK
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s),
            transport=transport,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment must not see the events
        )

    async def deliver(self, event_body: bytes, *, headers: Mapping[str, str]) -> None:
        extra = dict(headers)
        if self._secret is not None:
            extra[SIGNATURE_HEADER] = sign(self._secret, event_body)
        try:
            response = await self._client.post(self.url, content=event_body, headers=extra)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"webhook {self.url} timed out", details=str(exc)) from None
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"webhook {self.url} unreachable: {type(exc).__name__}", details=str(exc)
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status == 429 or status >= 500
        raise DeliveryError(
            f"webhook {self.url} answered HTTP {status}",
            retryable=retryable,
            details=response.text[:200],
        )

    async def close(self) -> None:
        await self._client.aclose()
