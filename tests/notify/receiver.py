"""A real HTTP webhook receiver on 127.0.0.1 for tests and benchmarks (asyncio streams,
HTTP/1.1 keep-alive). It records what it accepted and can be told to fail.

``decide(request, attempt)`` picks the status per request (``attempt`` counts the requests
seen for the same event id, from 1). ``GET /stats`` answers the counters as JSON, which the
benchmark reads when the receiver runs in its own process (``python -m tests.notify.receiver
--port N``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EVENT_ID = "x-objectjobs-event-id"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lowercased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers.get(EVENT_ID, "")


Decide = Callable[[Request, int], int]


class Receiver:
    def __init__(
        self, decide: Decide | None = None, *, delay_s: float = 0.0, keep: bool = True
    ) -> None:
        self.decide: Decide = decide or (lambda _req, _n: 200)
        self.delay_s = delay_s
        self.keep = keep
        self.accepted: list[Request] = []
        self.accepted_count = 0
        self.attempts: Counter[str] = Counter()
        self.requests = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # let the handlers see the end of their connections rather than be cancelled
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)
            # wait_closed() also waits for every client connection to go away; a client
            # that keeps its keep-alive connection open must not hang the test's teardown
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        self.accepted.clear()
        self.accepted_count = 0
        self.attempts.clear()
        self.requests = 0

    def records(self) -> list[dict[str, Any]]:
        """Every accepted event record, in arrival order."""
        return [rec for req in self.accepted for rec in req.json()["Records"]]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)  # type: ignore[arg-type]
        me.add_done_callback(self._handlers.discard)  # type: ignore[arg-type]
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                status, payload = self._answer(request)
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: {len(payload)}\r\n"
                    f"Content-Type: application/json\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        self._writers.discard(writer)
        writer.close()

    def _answer(self, request: Request) -> tuple[int, bytes]:
        if request.method == "GET" and request.path == "/stats":
            stats = {
                "accepted": self.accepted_count,
                "requests": self.requests,
                "distinct": len(self.attempts),
                "connections": self.connections,
                # whether the receiver kept up: a benchmark compares it with the job's
                "cpu_s": time.process_time(),
            }
            return 200, json.dumps(stats).encode()
        self.requests += 1
        self.attempts[request.event_id] += 1
        status = self.decide(request, self.attempts[request.event_id])
        if 200 <= status < 300:
            self.accepted_count += 1
            if self.keep:
                self.accepted.append(request)
        # a 204 or 304 has no body (h11 would take one for the next response)
        return status, b"" if status in (204, 304) else b"{}"


def main() -> None:
    parser = argparse.ArgumentParser(description="count webhook deliveries")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    async def serve() -> None:
        receiver = await Receiver(keep=False).start(args.port)
        assert receiver._server is not None
        await receiver._server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
