"""API latency metrics as a plain ASGI middleware, and the /metrics endpoint."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from objectjobs.metrics import Metrics

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    body = await metrics.render(request.app.state.ctx.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestTiming:
    """Observes every HTTP request's latency by route template (not raw path, so ids and
    unknown paths don't explode the label set) and status code."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            operation = getattr(route, "path", None) or "unmatched"
            self.metrics.api_seconds.labels(operation, str(status)).observe(
                time.perf_counter() - start
            )
