"""Opaque, tamper-evident page tokens (SPEC §2.5).

A token carries the keyset cursor plus a digest of the request it belongs to (listing kind,
filters, caller) and an HMAC over both. A changed byte, or reuse with other filters or by
another caller, is an InvalidRequest - never a silently wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from objectjobs.auth import derive_key
from objectjobs.errors import InvalidRequest
from objectjobs.store.interface import JobCursor

_MAC_BYTES = 16


def _scope_digest(scope: Mapping[str, Any]) -> str:
    canonical = json.dumps(scope, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class PageTokens:
    """Issues and opens page tokens with a key derived from the shared secret."""

    def __init__(self, secret: str) -> None:
        self._key = derive_key(secret, "page-token")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, cursor: Any, scope: Mapping[str, Any]) -> str:
        payload = json.dumps(
            {"c": cursor, "s": _scope_digest(scope)}, separators=(",", ":")
        ).encode()
        return base64.urlsafe_b64encode(payload + self._mac(payload)).rstrip(b"=").decode()

    def open(self, token: str, scope: Mapping[str, Any]) -> Any:
        """The cursor inside ``token``; InvalidRequest if forged, altered or out of scope."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError as exc:
            raise InvalidRequest("invalid pageToken", details="not a token we issued") from exc
        # The decoder ignores stray characters and a final character's unused bits, so
        # several spellings decode to one token; only the one we issued is accepted.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
            raise InvalidRequest("invalid pageToken", details="not a token we issued")
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise InvalidRequest("invalid pageToken", details="not a token we issued")
        body = json.loads(payload)
        if body.get("s") != _scope_digest(scope):
            raise InvalidRequest(
                "pageToken does not belong to this request",
                details="a page token only continues the listing, with the same filters, "
                "that it was issued for",
            )
        return body.get("c")

    # --- typed helpers --------------------------------------------------------------------

    def issue_job_cursor(self, cursor: JobCursor, scope: Mapping[str, Any]) -> str:
        return self.issue([cursor.start_time.isoformat(), cursor.job_id], scope)

    def open_job_cursor(self, token: str, scope: Mapping[str, Any]) -> JobCursor:
        value = self.open(token, scope)
        try:
            start, job_id = value
            return JobCursor(start_time=datetime.fromisoformat(start), job_id=int(job_id))
        except (TypeError, ValueError) as exc:  # signed by us, so only a version skew
            raise InvalidRequest("invalid pageToken", details="unreadable cursor") from exc

    def open_int_cursor(self, token: str, scope: Mapping[str, Any]) -> int:
        value = self.open(token, scope)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest("invalid pageToken", details="unreadable cursor")
        return value
