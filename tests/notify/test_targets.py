"""Conformance of the delivery targets, each against a real peer on 127.0.0.1: the webhook
against an HTTP server started here, AMQP against a real RabbitMQ (``rabbitmq_url``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import pytest

from objectjobs.errors import DeliveryError
from objectjobs.notify import DeliveryTarget, open_target
from objectjobs.settings import NotifyTargetSettings
from tests.notify.receiver import Receiver
from tests.servers import free_port


@dataclass
class Peer:
    """A delivery target and a way to read what its destination received."""

    target: DeliveryTarget
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    drain: object = None

    async def wait_received(self, n: int, limit_s: float = 10.0) -> list[tuple[bytes, dict]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        # polling: the destination is another party, with no event to wait on
        while len(self.received) < n and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.received


@pytest.fixture(params=["webhook", "amqp"])
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    if request.param == "webhook":
        async with Receiver() as receiver:
            target = open_target(NotifyTargetSettings(kind="webhook", url=receiver.url))
            p = Peer(target)

            async def poll() -> None:
                while True:
                    p.received[:] = [(r.body, r.headers) for r in receiver.accepted]
                    await asyncio.sleep(0.01)

            poller = asyncio.create_task(poll())
            yield p
            poller.cancel()
            await target.close()
        return
    url = request.getfixturevalue("rabbitmq_url")
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    name = f"oj-test-{uuid.uuid4().hex[:8]}"
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="events.#")
    target = open_target(
        NotifyTargetSettings(kind="amqp", url=url, exchange=name, routing_key="events.s3")
    )
    p = Peer(target)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        headers = {k.lower(): str(v) for k, v in (message.headers or {}).items()}
        headers["message-id"] = message.message_id or ""
        p.received.append((message.body, headers))
        await message.ack()

    await queue.consume(on_message)
    yield p
    await target.close()
    await connection.close()


async def test_delivers_the_exact_body_with_headers(peer: Peer) -> None:
    body = json.dumps({"Records": [{"k": "ä b"}]}).encode()
    await peer.target.deliver(body, headers={"X-ObjectJobs-Event-Id": "e1"})
    [(got, headers)] = await peer.wait_received(1)
    assert got == body
    assert headers["x-objectjobs-event-id"] == "e1"


async def test_concurrent_deliveries_all_arrive_once(peer: Peer) -> None:
    bodies = [json.dumps({"n": i}).encode() for i in range(300)]
    await asyncio.gather(
        *(
            peer.target.deliver(b, headers={"X-ObjectJobs-Event-Id": str(i)})
            for i, b in enumerate(bodies)
        )
    )
    received = await peer.wait_received(300)
    assert sorted(b for b, _ in received) == sorted(bodies)


async def test_unreachable_destination_is_retryable() -> None:
    port = free_port()  # nothing listens there
    for settings in (
        NotifyTargetSettings(kind="webhook", url=f"http://127.0.0.1:{port}/x", timeout_s=2),
        NotifyTargetSettings(kind="amqp", url=f"amqp://guest:guest@127.0.0.1:{port}/", timeout_s=2),
    ):
        async with open_target(settings) as target:
            with pytest.raises(DeliveryError) as info:
                await target.deliver(b"{}", headers={})
            assert info.value.retryable, settings.kind


# --- webhook specifics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (500, True), (503, True), (400, False), (404, False), (410, False), (301, False)],
)
async def test_webhook_status_decides_retryable(status: int, retryable: bool) -> None:
    async with Receiver(lambda _r, _n: status) as receiver:
        settings = NotifyTargetSettings(kind="webhook", url=receiver.url)
        async with open_target(settings) as t:
            with pytest.raises(DeliveryError) as info:
                await t.deliver(b"{}", headers={})
    assert info.value.retryable is retryable
    assert str(status) in info.value.message


async def test_webhook_timeout_is_retryable() -> None:
    async with Receiver(delay_s=1.0) as receiver:
        settings = NotifyTargetSettings(kind="webhook", url=receiver.url, timeout_s=0.2)
        async with open_target(settings) as t:
            with pytest.raises(DeliveryError) as info:
                await t.deliver(b"{}", headers={})
    assert info.value.retryable and "timed out" in info.value.message


async def test_webhook_sends_configured_headers_and_a_verifiable_signature() -> None:
    secret = "s3cr3t-ü"
    async with Receiver() as receiver:
        settings = NotifyTargetSettings(
            kind="webhook",
            url=receiver.url,
            headers={"Authorization": "Bearer tok"},
            hmac_secret=secret,
        )
        async with open_target(settings) as t:
            await t.deliver(b'{"a":1}', headers={"X-Extra": "1"})
    [req] = receiver.accepted
    assert req.headers["authorization"] == "Bearer tok"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-extra"] == "1"
    expected = hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
    scheme, _, digest = req.headers["x-objectjobs-signature"].partition("=")
    assert scheme == "sha256" and hmac.compare_digest(digest, expected)
    forged = hmac.new(secret.encode(), b'{"a":2}', hashlib.sha256).hexdigest()
    assert digest != forged


# --- AMQP specifics --------------------------------------------------------------------------


async def test_amqp_missing_exchange_and_unroutable_messages_are_permanent(
    rabbitmq_url: str,
) -> None:
    missing = NotifyTargetSettings(
        kind="amqp", url=rabbitmq_url, exchange=f"nope-{uuid.uuid4().hex}", routing_key="r"
    )
    async with open_target(missing) as t:
        with pytest.raises(DeliveryError) as info:
            await t.deliver(b"{}", headers={})
    assert not info.value.retryable and "does not exist" in info.value.message
    # the default exchange routes by queue name: no such queue, nobody takes it
    unroutable = NotifyTargetSettings(
        kind="amqp", url=rabbitmq_url, routing_key=f"no-queue-{uuid.uuid4().hex}"
    )
    async with open_target(unroutable) as t:
        with pytest.raises(DeliveryError) as info:
            await t.deliver(b"{}", headers={})
    assert not info.value.retryable and "no queue" in info.value.message


async def test_amqp_reconnects_after_losing_its_connection(rabbitmq_url: str) -> None:
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(f"oj-q-{uuid.uuid4().hex[:8]}", exclusive=True)
    settings = NotifyTargetSettings(kind="amqp", url=rabbitmq_url, routing_key=queue.name)
    async with open_target(settings) as t:
        await t.deliver(b"1", headers={"X-ObjectJobs-Event-Id": "a"})
        # the broker side of the link goes away (as on a broker restart)
        assert t._connection is not None  # type: ignore[attr-defined]
        await t._connection.close()  # type: ignore[attr-defined]
        try:
            await t.deliver(b"2", headers={})
        except DeliveryError as exc:
            assert exc.retryable  # a lost link is worth retrying...
            await t.deliver(b"2", headers={})  # ...and the retry reconnects
    got = []
    for _ in range(50):
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append((message.body, message.message_id))
        if len(got) == 2:
            break
        await asyncio.sleep(0.05)
    assert [body for body, _ in got] == [b"1", b"2"] and got[0][1] == "a"
    await connection.close()
