"""AMQP 0-9-1 delivery (RabbitMQ): one persistent message per event, with publisher confirms.

The message goes to ``exchange`` (empty: the default exchange) with ``routing_key``,
``mandatory`` set: a message no queue takes is refused (permanent), a nack or a lost
connection is retryable. The connection is opened on first use and reopened after a loss.
Per-event headers become AMQP message headers; ``X-ObjectJobs-Event-Id`` also becomes the
message id, so consumers can drop the duplicates at-least-once delivery may bring.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from objectjobs.errors import DeliveryError
from objectjobs.notify.interface import DeliveryTarget
from objectjobs.settings import NotifyTargetSettings

EVENT_ID_HEADER = "X-ObjectJobs-Event-Id"


class AmqpTarget(DeliveryTarget):
    kind = "amqp"

    def __init__(self, settings: NotifyTargetSettings) -> None:
        self.url = settings.url
        self.exchange_name = settings.exchange
        self.routing_key = settings.routing_key
        self.timeout_s = settings.timeout_s
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    def _where(self) -> str:
        return f"exchange {self.exchange_name or '(default)'!r} at {_redacted(self.url)}"

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if (
                self._exchange is not None
                and self._channel is not None
                and not self._channel.is_closed
            ):
                return self._exchange
            await self._drop()
            try:
                self._connection = await aio_pika.connect(self.url, timeout=self.timeout_s)
                self._channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                if self.exchange_name:
                    self._exchange = await self._channel.get_exchange(
                        self.exchange_name, ensure=True
                    )
                else:
                    self._exchange = self._channel.default_exchange
            except aio_pika.exceptions.ChannelNotFoundEntity:
                await self._drop()
                raise DeliveryError(
                    f"AMQP {self._where()}: the exchange does not exist", retryable=False
                ) from None
            except aio_pika.exceptions.ProbableAuthenticationError as exc:
                await self._drop()
                raise DeliveryError(
                    f"AMQP login refused at {_redacted(self.url)}",
                    retryable=False,
                    details=str(exc),
                ) from None
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
                await self._drop()
                raise DeliveryError(
                    f"AMQP broker unreachable at {_redacted(self.url)}: {type(exc).__name__}",
                    details=str(exc),
                ) from None
            return self._exchange

    async def deliver(self, event_body: bytes, *, headers: Mapping[str, str]) -> None:
        exchange = await self._ready()
        message = aio_pika.Message(
            event_body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=dict(headers),
            message_id=headers.get(EVENT_ID_HEADER),
        )
        try:
            await exchange.publish(
                message, self.routing_key, mandatory=True, timeout=self.timeout_s
            )
        except aio_pika.exceptions.PublishError:
            raise DeliveryError(
                f"AMQP {self._where()}: no queue takes routing key {self.routing_key!r}",
                retryable=False,
            ) from None
        except aio_pika.exceptions.DeliveryError as exc:
            raise DeliveryError(
                f"AMQP {self._where()}: the broker refused the message (nack)",
                details=str(exc),
            ) from None
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
            # the channel or connection is gone: reopen on the next attempt
            async with self._lock:
                await self._drop()
            raise DeliveryError(
                f"AMQP {self._where()}: publishing failed: {type(exc).__name__}",
                details=str(exc),
            ) from None

    async def _drop(self) -> None:
        connection, self._connection, self._channel, self._exchange = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None and not connection.is_closed:
            # a broken connection may fail to close: it is dropped either way
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
