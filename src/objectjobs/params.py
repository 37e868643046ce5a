"""Validation of ``jobParams`` per job type (SPEC §3.2-§3.6). Pure: no I/O.

Values arrive as strings (the wire contract is string to string) and are echoed back as
given; this module only decides whether they are acceptable, and offers the parsers the
job handlers use to read them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from objectjobs.errors import InvalidRequest
from objectjobs.lifecycle_policy import validate_policy_json
from objectjobs.models import JobType

COMMON_KEYS = ("prefix", "dryRun", "maxFailurePercent", "objectsPerSecond")
TYPE_KEYS: dict[JobType, tuple[str, ...]] = {
    JobType.BATCH_REPLICATE: ("replicationFilter", "target", "targetBucket"),
    JobType.LIFECYCLE_UPDATE: ("policy", "asOf"),
    JobType.METRIC_RECONCILIATION: ("fix",),
    JobType.TRIGGER_RECONCILIATION: ("modifiedAfter", "modifiedBefore", "force"),
}
REPLICATION_FILTERS = ("ALL", "NEW", "FAILED")


def accepted_keys(job_type: JobType) -> tuple[str, ...]:
    return COMMON_KEYS + TYPE_KEYS[job_type]


# --- value parsers (also used by the job handlers) -----------------------------------------


def parse_bool(key: str, value: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise InvalidRequest(f"jobParams.{key} must be 'true' or 'false', not {value!r}")


def parse_number(key: str, value: str, *, low: float, high: float, low_open: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    inside = (number > low if low_open else number >= low) and number <= high
    if math.isnan(number) or not inside:
        low_text = f"greater than {low:g}" if low_open else f"from {low:g}"
        high_text = f"to {high:g}" if math.isfinite(high) else ""
        raise InvalidRequest(
            f"jobParams.{key} must be a number {low_text} {high_text}".rstrip() + f", not {value!r}"
        )
    return number


def parse_iso8601(key: str, value: str) -> datetime:
    """An ISO-8601 date or date-time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(
            f"jobParams.{key} must be an ISO-8601 date-time such as 2024-01-31T00:00:00Z, "
            f"not {value!r}"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- the LIFECYCLE_UPDATE policy -------------------------------------------------------------


def parse_lifecycle_policy(value: str) -> dict[str, Any]:
    """The policy JSON as a dict, checked by the lifecycle evaluator's own parser (one
    definition of what a valid policy is)."""
    try:
        validate_policy_json(value)
    except InvalidRequest as exc:
        message = exc.message if exc.message.startswith("policy") else f"policy: {exc.message}"
        raise InvalidRequest(f"jobParams.{message}") from None
    policy: dict[str, Any] = json.loads(value)
    return policy


# --- per-key checks and the entry point --------------------------------------------------------


def _choice(key: str, value: str, choices: Collection[str]) -> None:
    if value not in choices:
        raise InvalidRequest(f"jobParams.{key} must be one of {sorted(choices)}, not {value!r}")


def validate_job_params(
    job_type: JobType, params: Mapping[str, str], *, targets: Collection[str] = ()
) -> None:
    """Raise InvalidRequest unless every key is accepted for ``job_type`` and every value
    is well formed. ``targets`` are the names of the configured replication endpoints."""
    allowed = accepted_keys(job_type)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidRequest(
            f"unknown jobParams key(s) {unknown} for {job_type.value}; accepted: {list(allowed)}"
        )
    checks: dict[str, Callable[[str, str], object]] = {
        "prefix": lambda k, v: None,
        "dryRun": parse_bool,
        "maxFailurePercent": lambda k, v: parse_number(k, v, low=0, high=100, low_open=False),
        "objectsPerSecond": lambda k, v: parse_number(k, v, low=0, high=math.inf, low_open=True),
        "replicationFilter": lambda k, v: _choice(k, v, REPLICATION_FILTERS),
        "target": lambda k, v: _choice(k, v, targets),
        "targetBucket": _check_bucket_name,
        "policy": lambda k, v: parse_lifecycle_policy(v),
        "asOf": parse_iso8601,
        "fix": parse_bool,
        "modifiedAfter": parse_iso8601,
        "modifiedBefore": parse_iso8601,
        "force": parse_bool,
    }
    for key, value in params.items():
        checks[key](key, value)
    if "modifiedAfter" in params and "modifiedBefore" in params:
        after = parse_iso8601("modifiedAfter", params["modifiedAfter"])
        before = parse_iso8601("modifiedBefore", params["modifiedBefore"])
        if after >= before:
            raise InvalidRequest("jobParams.modifiedAfter must be earlier than modifiedBefore")


def _check_bucket_name(key: str, value: str) -> None:
    if not value or "/" in value or value in (".", "..") or len(value) > 255:
        raise InvalidRequest(f"jobParams.{key} must be a bucket name, not {value!r}")
