"""Start-up account state shared by every node: the admin user, secret key, serial number."""

from __future__ import annotations

import asyncio
import secrets

from objectjobs.auth import hash_password
from objectjobs.errors import InvalidRequest
from objectjobs.settings import Settings
from objectjobs.store.interface import JobStore


async def ensure_admin(store: JobStore, settings: Settings) -> str | None:
    """Create the admin user (``auth.admin_user``) if it does not exist yet.

    Returns the generated password when ``auth.admin_password`` is unset and the user was
    created now, so ``serve`` can print it once; None otherwise (user existed, or the
    operator chose the password).
    """
    name = settings.auth.admin_user
    if await store.get_user_by_name(name) is not None:
        return None
    configured = settings.auth.admin_password
    password = configured.get_secret_value() if configured else secrets.token_urlsafe(16)
    password_hash = await asyncio.to_thread(hash_password, password)
    try:
        await store.create_user(name, "admin", password_hash)
    except InvalidRequest:
        # another node created it between our check and insert: theirs stands
        return None
    return None if configured else password


async def resolve_secret_key(store: JobStore, settings: Settings) -> str:
    """The key signing tokens: configured, or generated once and shared via the store."""
    if settings.auth.secret_key is not None:
        return settings.auth.secret_key.get_secret_value()
    return await store.get_or_create_setting("secret_key", secrets.token_urlsafe(48))


async def resolve_serial_number(store: JobStore) -> str:
    """This installation's serial number (``serial_number/get``), stable across nodes."""
    return await store.get_or_create_setting("serial_number", secrets.token_hex(8).upper())
