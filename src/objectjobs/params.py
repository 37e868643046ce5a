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


def _fail(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"jobParams.policy: {path} {message}")


def _check_keys(path: str, obj: Any, allowed: Collection[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(path, "must be an object")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _fail(path, f"has unknown keys {unknown}; accepted: {sorted(allowed)}")
    return obj


def _check_int(path: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum}")


def _check_str(path: str, value: Any) -> None:
    if not isinstance(value, str):
        raise _fail(path, "must be a string")


def _check_date(path: str, value: Any) -> None:
    _check_str(path, value)
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise _fail(path, "must be an ISO-8601 date-time") from exc


def _check_tag(path: str, tag: Any) -> None:
    tag = _check_keys(path, tag, ("Key", "Value"))
    for part in ("Key", "Value"):
        if part not in tag:
            raise _fail(path, f"needs {part}")
        _check_str(f"{path}.{part}", tag[part])


def _check_filter(path: str, flt: Any) -> None:
    flt = _check_keys(
        path, flt, ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
    )
    if len(flt) > 1:
        raise _fail(path, "must have at most one of Prefix, Tag, ObjectSize*, And")
    if "Prefix" in flt:
        _check_str(f"{path}.Prefix", flt["Prefix"])
    if "Tag" in flt:
        _check_tag(f"{path}.Tag", flt["Tag"])
    for size in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if size in flt:
            _check_int(f"{path}.{size}", flt[size], minimum=0)
    if "And" in flt:
        both = _check_keys(
            f"{path}.And",
            flt["And"],
            ("Prefix", "Tags", "ObjectSizeGreaterThan", "ObjectSizeLessThan"),
        )
        if "Prefix" in both:
            _check_str(f"{path}.And.Prefix", both["Prefix"])
        for size in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
            if size in both:
                _check_int(f"{path}.And.{size}", both[size], minimum=0)
        if "Tags" in both:
            if not isinstance(both["Tags"], list):
                raise _fail(f"{path}.And.Tags", "must be a list")
            for i, tag in enumerate(both["Tags"]):
                _check_tag(f"{path}.And.Tags[{i}]", tag)


def _check_expiration(path: str, exp: Any) -> None:
    exp = _check_keys(path, exp, ("Days", "Date", "ExpiredObjectDeleteMarker"))
    if not exp:
        raise _fail(path, "needs Days, Date or ExpiredObjectDeleteMarker")
    if "Days" in exp and "Date" in exp:
        raise _fail(path, "must not have both Days and Date")
    if "Days" in exp:
        _check_int(f"{path}.Days", exp["Days"], minimum=1)
    if "Date" in exp:
        _check_date(f"{path}.Date", exp["Date"])
    if "ExpiredObjectDeleteMarker" in exp and not isinstance(
        exp["ExpiredObjectDeleteMarker"], bool
    ):
        raise _fail(f"{path}.ExpiredObjectDeleteMarker", "must be true or false")


def _check_transitions(path: str, transitions: Any, day_key: str, allow_date: bool) -> None:
    if not isinstance(transitions, list):
        raise _fail(path, "must be a list")
    keys = (
        (day_key, "StorageClass", "NewerNoncurrentVersions")
        if not allow_date
        else (day_key, "Date", "StorageClass")
    )
    for i, tr in enumerate(transitions):
        where = f"{path}[{i}]"
        tr = _check_keys(where, tr, keys)
        if "StorageClass" not in tr:
            raise _fail(where, "needs StorageClass")
        _check_str(f"{where}.StorageClass", tr["StorageClass"])
        if day_key in tr:
            _check_int(f"{where}.{day_key}", tr[day_key], minimum=0)
        elif allow_date and "Date" in tr:
            _check_date(f"{where}.Date", tr["Date"])
        else:
            raise _fail(where, f"needs {day_key}" + (" or Date" if allow_date else ""))
        if "NewerNoncurrentVersions" in tr:
            _check_int(f"{where}.NewerNoncurrentVersions", tr["NewerNoncurrentVersions"], minimum=1)


_RULE_KEYS = (
    "ID",
    "Status",
    "Filter",
    "Prefix",
    "Expiration",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
    "Transitions",
    "NoncurrentVersionTransitions",
)
_ACTIONS = (
    "Expiration",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
    "Transitions",
    "NoncurrentVersionTransitions",
)


def _check_rule(path: str, rule: Any) -> None:
    rule = _check_keys(path, rule, _RULE_KEYS)
    if rule.get("Status") not in ("Enabled", "Disabled"):
        raise _fail(f"{path}.Status", "must be 'Enabled' or 'Disabled'")
    if "ID" in rule:
        _check_str(f"{path}.ID", rule["ID"])
        if len(rule["ID"]) > 255:
            raise _fail(f"{path}.ID", "must be at most 255 characters")
    if "Filter" in rule and "Prefix" in rule:
        raise _fail(path, "must not have both Filter and Prefix")
    if "Prefix" in rule:
        _check_str(f"{path}.Prefix", rule["Prefix"])
    if "Filter" in rule:
        _check_filter(f"{path}.Filter", rule["Filter"])
    if not any(action in rule for action in _ACTIONS):
        raise _fail(path, f"needs at least one action of {list(_ACTIONS)}")
    if "Expiration" in rule:
        _check_expiration(f"{path}.Expiration", rule["Expiration"])
    if "NoncurrentVersionExpiration" in rule:
        where = f"{path}.NoncurrentVersionExpiration"
        nve = _check_keys(
            where,
            rule["NoncurrentVersionExpiration"],
            ("NoncurrentDays", "NewerNoncurrentVersions"),
        )
        if "NoncurrentDays" not in nve:
            raise _fail(where, "needs NoncurrentDays")
        _check_int(f"{where}.NoncurrentDays", nve["NoncurrentDays"], minimum=1)
        if "NewerNoncurrentVersions" in nve:
            _check_int(
                f"{where}.NewerNoncurrentVersions", nve["NewerNoncurrentVersions"], minimum=1
            )
    if "AbortIncompleteMultipartUpload" in rule:
        where = f"{path}.AbortIncompleteMultipartUpload"
        abort = _check_keys(where, rule["AbortIncompleteMultipartUpload"], ("DaysAfterInitiation",))
        if "DaysAfterInitiation" not in abort:
            raise _fail(where, "needs DaysAfterInitiation")
        _check_int(f"{where}.DaysAfterInitiation", abort["DaysAfterInitiation"], minimum=1)
    if "Transitions" in rule:
        _check_transitions(f"{path}.Transitions", rule["Transitions"], "Days", allow_date=True)
    if "NoncurrentVersionTransitions" in rule:
        _check_transitions(
            f"{path}.NoncurrentVersionTransitions",
            rule["NoncurrentVersionTransitions"],
            "NoncurrentDays",
            allow_date=False,
        )


def parse_lifecycle_policy(value: str) -> dict[str, Any]:
    """The policy JSON as a dict after a structural check of the S3 lifecycle schema."""
    try:
        policy = json.loads(value)
    except ValueError as exc:
        raise InvalidRequest(f"jobParams.policy is not valid JSON: {exc}") from exc
    policy = _check_keys("(top level)", policy, ("Rules",))
    rules = policy.get("Rules")
    if not isinstance(rules, list) or not rules:
        raise _fail("Rules", "must be a non-empty list")
    for i, rule in enumerate(rules):
        _check_rule(f"Rules[{i}]", rule)
    ids = [rule["ID"] for rule in rules if "ID" in rule]
    if len(ids) != len(set(ids)):
        raise _fail("Rules", "have duplicate IDs")
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
