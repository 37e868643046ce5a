"""The FastAPI application: routers, error table, lifespan wiring (SPEC §2)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from objectjobs.accounts import ensure_admin, resolve_secret_key, resolve_serial_number
from objectjobs.api import observability, routes_auth, routes_jobs
from objectjobs.api.context import ApiContext
from objectjobs.api.errors import install_error_handlers
from objectjobs.api.observability import RequestTiming
from objectjobs.api.schemas import Health
from objectjobs.api.security import Context
from objectjobs.auth import hash_password
from objectjobs.console.routes import mount_console
from objectjobs.errors import JobStoreError
from objectjobs.metrics import Metrics
from objectjobs.settings import Settings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore

API_PREFIXES = ("/mapi/v1", "/v1")


def create_app(
    settings: Settings,
    *,
    store: JobStore | None = None,
    storage: Storage | None = None,
    background: Sequence[Callable[[], AbstractAsyncContextManager[Any]]] = (),
) -> FastAPI:
    """The API application. ``store``/``storage`` given are used as they are and left open
    at shutdown (the caller owns them); otherwise the lifespan opens them from ``settings``
    (migrating the store) and closes them. ``background``: contexts entered once the app
    is up and exited at its shutdown (``objectjobs serve``'s worker processes)."""

    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # imported here: the drivers are chosen in one place, and only when needed
            from objectjobs.wiring import open_default_storage, open_store

            the_store = store
            if the_store is None:
                the_store = await open_store(settings)
                stack.push_async_callback(the_store.close)
            the_storage = storage
            if the_storage is None:
                the_storage = open_default_storage(settings)
                stack.push_async_callback(the_storage.close)
            # timed in place, also when the caller gave it: its calls show on /metrics
            metrics.instrument_storage(the_storage)

            secret = await resolve_secret_key(the_store, settings)
            app.state.generated_admin_password = await ensure_admin(the_store, settings)
            app.state.ctx = ApiContext.build(
                settings,
                the_store,
                the_storage,
                secret=secret,
                serial_number=await resolve_serial_number(the_store),
                dummy_password_hash=await asyncio.to_thread(
                    hash_password, secrets.token_urlsafe(16)
                ),
            )
            stack.callback(app.state.ctx.wakeups.close)

            if settings.worker.enabled:
                from objectjobs.worker import Worker

                worker = Worker(settings, the_store, the_storage, metrics=metrics)
                await stack.enter_async_context(worker.running())
            for context in background:
                await stack.enter_async_context(context())

            yield

    app = FastAPI(
        title="objectjobs",
        version="1",
        summary="Bulk jobs over S3-compatible buckets (MAPI jobs contract)",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.metrics = metrics
    app.add_middleware(RequestTiming, metrics=metrics)
    install_error_handlers(app)
    app.include_router(routes_auth.router)
    app.include_router(observability.router)
    mount_console(app)
    for prefix in API_PREFIXES:
        app.include_router(routes_auth.csrf_router, prefix=prefix)
        app.include_router(routes_jobs.router, prefix=prefix)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Job store unreachable"}},
        tags=["operations"],
    )
    async def healthz(ctx: Context) -> Any:
        try:
            await ctx.store.ping()
        except JobStoreError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return Health(status="ok")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _openapi_without_422(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents validation failures as 422; we answer them 400 with the error body
    (documented per operation), so the 422 entries would be false."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        routes=app.routes,
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
