"""Serving the console's static files at ``/console/``.

The console is a plain MAPI client: no server-side rendering, no state here. The files ship
inside the package (no build step, no CDN), so it works on an air-gapped host.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"

# the console loads nothing but its own files and talks only to this origin; the policy
# makes an injected script or a framing attack inert even if a rendering bug slipped in
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # revalidate each load, so an upgraded server never runs against a stale app.js
    "Cache-Control": "no-cache",
}


class ConsoleFiles(StaticFiles):
    """StaticFiles with the console's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/console/`` (``/console`` redirects there; the redirect is
    relative so it also works behind a proxy that adds a path prefix)."""

    @app.get("/console", include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse("console/", status_code=307)

    app.mount("/console", ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
