"""What every request handler needs, built once by the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from objectjobs.auth import CsrfSigner, TokenSigner
from objectjobs.paging import PageTokens
from objectjobs.settings import Settings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from objectjobs.wakeups import NodeWakeups


@dataclass
class ApiContext:
    settings: Settings
    store: JobStore
    storage: Storage
    tokens: TokenSigner
    csrf: CsrfSigner
    pages: PageTokens
    serial_number: str
    # compared against when the user name is unknown, so both cases take as long
    dummy_password_hash: str
    # this node's worker processes, woken when a job is created
    wakeups: NodeWakeups

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: JobStore,
        storage: Storage,
        *,
        secret: str,
        serial_number: str,
        dummy_password_hash: str,
    ) -> ApiContext:
        return cls(
            settings=settings,
            store=store,
            storage=storage,
            tokens=TokenSigner(
                secret,
                access_lifetime_s=settings.auth.token_lifetime_s,
                refresh_lifetime_s=settings.auth.refresh_lifetime_s,
            ),
            csrf=CsrfSigner(secret, lifetime_s=settings.auth.csrf_lifetime_s),
            pages=PageTokens(secret),
            serial_number=serial_number,
            dummy_password_hash=dummy_password_hash,
            wakeups=NodeWakeups(settings.data_dir / "wake"),
        )


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx
