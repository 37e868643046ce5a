"""Logging set-up per ``[log]``: plain lines or JSON lines on stderr, secrets redacted.

Secrets are never passed to loggers on purpose; the redacting filter is the safety net for
a library that echoes a URL or an exception text holding one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

from objectjobs.errors import ConfigurationError
from objectjobs.settings import Settings

REDACTED = "***"
# the handler this module installed, so a second set-up replaces it instead of doubling lines
_HANDLER_NAME = "objectjobs"
_PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def secret_values(model: BaseModel) -> list[str]:
    """Every non-empty SecretStr value anywhere in the settings tree."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            if secret:
                found.append(secret)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    # longest first, so a secret containing another is replaced whole
    return sorted(set(found), key=len, reverse=True)


class RedactSecrets(logging.Filter):
    """Replace known secret values in the rendered message (and exception text)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True


#: the job whose work the current asyncio task does (set by the worker for each task run)
current_job_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "objectjobs_job_id", default=None
)


class JobIdFilter(logging.Filter):
    """Adds ``job_id`` to every record logged while a job's task runs, from any module."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = current_job_id.get()
        if job_id is not None and not hasattr(record, "job_id"):
            record.job_id = job_id
        return True


class PlainFormatter(logging.Formatter):
    """Plain lines, with ``[job <id>]`` on the lines of a job's work."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job_id = getattr(record, "job_id", None)
        return line if job_id is None else f"{line} [job {job_id}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(settings: Settings) -> None:
    """Configure the root logger once per process from ``settings.log``."""
    level = logging.getLevelNamesMapping().get(settings.log.level.upper())
    if level is None:
        raise ConfigurationError(f"log.level: unknown level {settings.log.level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter() if settings.log.json_format else PlainFormatter(_PLAIN_FORMAT)
    )
    handler.addFilter(JobIdFilter())
    handler.addFilter(RedactSecrets(secret_values(settings)))
    root.addHandler(handler)
    root.setLevel(level)
    # alembic announces each of its plugins at INFO on every start: noise, not news
    logging.getLogger("alembic.runtime.plugins").setLevel(max(level, logging.WARNING))
