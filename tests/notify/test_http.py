"""The webhook's HTTP client (objectjobs.notify.http) against real servers on 127.0.0.1:
connection reuse, the ways an answer may end, servers that close connections, timeouts,
cancellation, TLS and the requests it refuses to write."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from objectjobs.errors import DeliveryError
from objectjobs.notify.http import KEPT_BODY, HttpOrigin
from objectjobs.tls import ensure_self_signed
from tests.notify.receiver import Receiver
from tests.servers import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """A TCP server whose every connection runs ``handler``; yields its port."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        # a client going away mid-exchange is part of what these servers see
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return head[0], headers, body


def origin(port: int, path: str = "/hook", **kw: object) -> HttpOrigin:
    kw.setdefault("headers", {})
    kw.setdefault("timeout_s", 5.0)
    return HttpOrigin(f"http://127.0.0.1:{port}{path}", **kw)  # type: ignore[arg-type]


async def test_requests_share_kept_alive_connections() -> None:
    async with Receiver() as receiver:
        client = origin(receiver.port, max_connections=4)
        for i in range(20):
            assert (await client.post(b"{}", {"X-ObjectJobs-Event-Id": str(i)})).status == 200
        await asyncio.gather(*(client.post(b"{}", {}) for _ in range(100)))
        await client.close()
    assert receiver.requests == 120
    assert receiver.connections <= 4


async def test_writes_host_length_headers_and_the_exact_body() -> None:
    async with Receiver() as receiver:
        client = HttpOrigin(
            f"http://user:p%40ss@127.0.0.1:{receiver.port}/in?x=1",
            headers={"Content-Type": "application/json", "X-Static": "s"},
            timeout_s=5,
        )
        body = '{"k": "ä"}'.encode()
        await client.post(body, {"X-Event": "e", "x-static": "override"})
        await client.close()
    [req] = receiver.accepted
    assert (req.method, req.path, req.body) == ("POST", "/in?x=1", body)
    assert req.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert req.headers["content-length"] == str(len(body))
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-event"] == "e"
    assert req.headers["x-static"] == "override"  # a per-request header replaces a fixed one
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()


@pytest.mark.parametrize("ending", ["length", "chunked", "close"])
async def test_reads_answers_however_they_end(ending: str) -> None:
    text = b"x" * 3000

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader)
            if ending == "length":
                writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 3000\r\n\r\n" + text)
            elif ending == "chunked":
                writer.write(
                    b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"7d0\r\n" + text[:2000] + b"\r\n3e8\r\n" + text[2000:] + b"\r\n0\r\n\r\n"
                )
            else:
                writer.write(b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n" + text)
                await writer.drain()
                writer.close()
                return
            await writer.drain()

    async with raw_server(handler) as port:
        client = origin(port)
        for _ in range(2):
            answer = await client.post(b"{}", {})
            assert answer.status == 503
            assert answer.body == text[:KEPT_BODY]
        await client.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    """The server ends every kept-alive connection after one answer, without saying so."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as port:
        client = origin(port)
        for _ in range(5):
            assert (await client.post(b"{}", {})).status == 200
            await asyncio.sleep(0.05)  # the close reaches us before the next request
        # and when the close has not arrived yet, the request is sent once more
        for _ in range(5):
            assert (await client.post(b"{}", {})).status == 200
        await client.close()
    assert connections == 10


async def test_a_connection_lost_mid_answer_is_a_retryable_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async with raw_server(handler) as port:
        client = origin(port)
        with pytest.raises(DeliveryError) as info:
            await client.post(b"{}", {})
        await client.close()
    assert info.value.retryable and "unreachable" in info.value.message


async def test_garbage_answers_are_a_retryable_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with raw_server(handler) as port:
        client = origin(port)
        with pytest.raises(DeliveryError) as info:
            await client.post(b"{}", {})
        await client.close()
    assert info.value.retryable and "malformed" in info.value.message


async def test_a_timeout_spoils_only_its_connection() -> None:
    async with Receiver(delay_s=0.5) as receiver:
        client = origin(receiver.port, timeout_s=0.1)
        with pytest.raises(DeliveryError) as info:
            await client.post(b"{}", {})
        assert info.value.retryable and "timed out" in info.value.message
        receiver.delay_s = 0.0
        client._timeout_s = 5.0  # the late answer to the first request must not be taken
        assert (await client.post(b'{"n":2}', {})).status == 200
        await client.close()
    assert receiver.connections == 2


async def test_a_cancelled_request_leaves_the_client_usable() -> None:
    async with Receiver(delay_s=0.3) as receiver:
        client = origin(receiver.port, max_connections=1)
        task = asyncio.create_task(client.post(b"{}", {}))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await client.post(b"{}", {})).status == 200
        await client.close()


async def test_nothing_listening_is_a_retryable_error() -> None:
    client = origin(free_port())
    with pytest.raises(DeliveryError) as info:
        await client.post(b"{}", {})
    assert info.value.retryable


async def test_https_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, _, body = await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    async with raw_server(handler, server_ctx) as port:
        url = f"https://127.0.0.1:{port}/"
        trusting = ssl.create_default_context(cafile=str(cert))
        client = HttpOrigin(url, headers={}, timeout_s=5, ssl_context=trusting)
        answer = await client.post(b"secret", {})
        assert (answer.status, answer.body) == (200, b"secret")
        await client.close()
        untrusting = HttpOrigin(url, headers={}, timeout_s=5)  # the system's trust store
        with pytest.raises(DeliveryError) as info:
            await untrusting.post(b"secret", {})
        assert "SSL" in info.value.message


@pytest.mark.parametrize(
    "headers",
    [{"X-Bad": "a\r\nInjected: 1"}, {"Bad Name": "v"}, {"Content-Length": "1"}, {"X": "ü€"}],
)
async def test_refuses_to_write_an_ambiguous_request(headers: dict[str, str]) -> None:
    async with Receiver() as receiver:
        client = origin(receiver.port)
        with pytest.raises(DeliveryError) as info:
            await client.post(b"{}", headers)
        await client.close()
    assert not info.value.retryable
    assert receiver.requests == 0


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "not a url"])
def test_refuses_urls_it_cannot_post_to(url: str) -> None:
    with pytest.raises(DeliveryError) as info:
        HttpOrigin(url, headers={}, timeout_s=1)
    assert not info.value.retryable
