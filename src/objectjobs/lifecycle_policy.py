"""S3 lifecycle configurations as typed policies: parse and validate them.

Pure: no I/O. The schema is S3's ``LifecycleConfiguration`` as boto3 gives it (and as the
``policy`` parameter takes it, in JSON); ``objectjobs.lifecycle`` evaluates the result.
Every problem is an InvalidRequest naming the rule (1-based) and the field.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from objectjobs.errors import InvalidRequest

MAX_RULES = 1000
_STORAGE_CLASS = re.compile(r"^[A-Z0-9_]{1,64}$")


# --- the typed policy ------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None
    size_lt: int | None = None

    def matches(self, key: str, size: int | None, tags: Mapping[str, str] | None) -> bool:
        """``size`` None: a delete marker or an upload; ``tags`` None: not fetched (only
        valid when the filter has no tag predicate)."""
        if not key.startswith(self.prefix):
            return False
        if size is not None:
            if self.size_gt is not None and not size > self.size_gt:
                return False
            if self.size_lt is not None and not size < self.size_lt:
                return False
        if self.tags:
            if tags is None:
                return False
            return all(tags.get(k) == v for k, v in self.tags)
        return True


@dataclass(frozen=True)
class Transition:
    storage_class: str
    days: int | None = None
    date: datetime | None = None
    newer_noncurrent: int = 0  # noncurrent transitions only


@dataclass(frozen=True)
class Rule:
    id: str
    enabled: bool
    filter: Filter
    expiration_days: int | None = None
    expiration_date: datetime | None = None
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = None
    newer_noncurrent: int = 0
    abort_days: int | None = None
    transitions: tuple[Transition, ...] = ()
    noncurrent_transitions: tuple[Transition, ...] = ()


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]

    @functools.cached_property
    def active(self) -> tuple[Rule, ...]:
        # read once per version evaluated: computed once per policy
        return tuple(r for r in self.rules if r.enabled)

    @property
    def has_uploads_rule(self) -> bool:
        return any(r.abort_days is not None for r in self.active)

    @functools.cached_property
    def has_transitions(self) -> bool:
        return any(r.transitions or r.noncurrent_transitions for r in self.active)

    @functools.cached_property
    def screens(self) -> dict[datetime, Any]:
        """What the evaluation derives from the policy per moment (``lifecycle.screen``),
        kept with the policy it was made from."""
        return {}


# --- parsing ---------------------------------------------------------------------------


def _bad(rule: int | None, message: str) -> InvalidRequest:
    where = f"lifecycle policy: rule {rule + 1}: " if rule is not None else "lifecycle policy: "
    return InvalidRequest(where + message)


def _int(value: Any, rule: int, name: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(rule, f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise _bad(rule, f"{name} must be between {minimum} and {maximum}")
    return value


def _date(value: Any, rule: int, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(rule, f"{name} is not an ISO-8601 date: {value!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise _bad(rule, f"{name} must be an ISO-8601 date")
    moment = moment.astimezone(UTC)
    if moment.time() != time(0):
        raise _bad(rule, f"{name} must be at midnight UTC")
    return moment


def _check_keys(obj: Any, rule: int, name: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(rule, f"{name} must be an object")
    unknown = set(obj) - allowed
    if unknown:
        raise _bad(
            rule, f"{name} has unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}"
        )
    return obj


def _tag(obj: Any, rule: int) -> tuple[str, str]:
    tag = _check_keys(obj, rule, "Tag", {"Key", "Value"})
    if not isinstance(tag.get("Key"), str) or not tag["Key"]:
        raise _bad(rule, "Tag needs a non-empty Key")
    # S3's schema requires both Key and Value (an empty Value is allowed)
    if not isinstance(tag.get("Value"), str):
        raise _bad(rule, "Tag needs a Value (a string, may be empty)")
    return tag["Key"], tag["Value"]


def _filter(raw: dict[str, Any], rule: int) -> Filter:
    if "Filter" in raw and "Prefix" in raw:
        raise _bad(rule, "give either Filter or the legacy Prefix, not both")
    if "Filter" not in raw:
        prefix = raw.get("Prefix", "")
        if not isinstance(prefix, str):
            raise _bad(rule, "Prefix must be a string")
        return Filter(prefix=prefix)
    f = _check_keys(
        raw["Filter"],
        rule,
        "Filter",
        {"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And"},
    )
    if len(f) > 1:
        raise _bad(rule, f"Filter takes one predicate (use And to combine), got {sorted(f)}")
    body = f
    if "And" in f:
        body = _check_keys(
            f["And"], rule, "And", {"Prefix", "Tags", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}
        )
        if not body:
            raise _bad(rule, "And must combine at least one predicate")
    prefix = body.get("Prefix", "")
    if not isinstance(prefix, str):
        raise _bad(rule, "Prefix must be a string")
    tag_list: list[Any] = [body["Tag"]] if "Tag" in body else list(body.get("Tags", []))
    if "Tags" in body and not isinstance(body["Tags"], list):
        raise _bad(rule, "And.Tags must be a list")
    tags = tuple(_tag(t, rule) for t in tag_list)
    if len({k for k, _ in tags}) != len(tags):
        raise _bad(rule, "a tag key appears twice in the filter")
    gt = body.get("ObjectSizeGreaterThan")
    lt = body.get("ObjectSizeLessThan")
    gt = None if gt is None else _int(gt, rule, "ObjectSizeGreaterThan", 0)
    lt = None if lt is None else _int(lt, rule, "ObjectSizeLessThan", 1)
    if gt is not None and lt is not None and gt >= lt:
        raise _bad(rule, "ObjectSizeGreaterThan must be less than ObjectSizeLessThan")
    return Filter(prefix, tags, gt, lt)


def _transitions(raw: Any, rule: int, noncurrent: bool) -> tuple[Transition, ...]:
    name = "NoncurrentVersionTransitions" if noncurrent else "Transitions"
    if not isinstance(raw, list):
        raise _bad(rule, f"{name} must be a list")
    out = []
    for item in raw:
        allowed = (
            {"NoncurrentDays", "StorageClass", "NewerNoncurrentVersions"}
            if noncurrent
            else {"Days", "Date", "StorageClass"}
        )
        t = _check_keys(item, rule, name[:-1], allowed)
        sc = t.get("StorageClass")
        if not isinstance(sc, str) or not _STORAGE_CLASS.match(sc) or sc == "STANDARD":
            raise _bad(rule, f"{name[:-1]} needs a StorageClass other than STANDARD, got {sc!r}")
        if noncurrent:
            if "NoncurrentDays" not in t:
                raise _bad(rule, "NoncurrentVersionTransition needs NoncurrentDays")
            days = _int(t["NoncurrentDays"], rule, "NoncurrentDays", 0)
            newer = _int(
                t.get("NewerNoncurrentVersions", 0), rule, "NewerNoncurrentVersions", 0, 100
            )
            out.append(Transition(sc, days=days, newer_noncurrent=newer))
        else:
            if ("Days" in t) == ("Date" in t):
                raise _bad(rule, "Transition needs exactly one of Days and Date")
            if "Days" in t:
                out.append(Transition(sc, days=_int(t["Days"], rule, "Days", 0)))
            else:
                out.append(Transition(sc, date=_date(t["Date"], rule, "Transition Date")))
    return tuple(out)


_RULE_KEYS = {
    "ID",
    "Status",
    "Filter",
    "Prefix",
    "Expiration",
    "Transitions",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionTransitions",
    "AbortIncompleteMultipartUpload",
}


def _rule(raw: Any, i: int) -> Rule:
    r = _check_keys(raw, i, "a rule", _RULE_KEYS)
    rule_id = r.get("ID", f"rule-{i + 1}")
    if not isinstance(rule_id, str) or len(rule_id) > 255:
        raise _bad(i, "ID must be a string of at most 255 characters")
    status = r.get("Status")
    if status not in ("Enabled", "Disabled"):
        raise _bad(i, f"Status must be Enabled or Disabled, got {status!r}")
    flt = _filter(r, i)
    fields: dict[str, Any] = {}
    if "Expiration" in r:
        e = _check_keys(
            r["Expiration"], i, "Expiration", {"Days", "Date", "ExpiredObjectDeleteMarker"}
        )
        if len(e) != 1:
            raise _bad(i, "Expiration takes exactly one of Days, Date, ExpiredObjectDeleteMarker")
        if "Days" in e:
            fields["expiration_days"] = _int(e["Days"], i, "Expiration Days", 1)
        elif "Date" in e:
            fields["expiration_date"] = _date(e["Date"], i, "Expiration Date")
        else:
            if not isinstance(e["ExpiredObjectDeleteMarker"], bool):
                raise _bad(i, "ExpiredObjectDeleteMarker must be true or false")
            if e["ExpiredObjectDeleteMarker"] and flt.tags:
                raise _bad(i, "ExpiredObjectDeleteMarker cannot be used with a tag filter")
            fields["expired_object_delete_marker"] = e["ExpiredObjectDeleteMarker"]
    if "NoncurrentVersionExpiration" in r:
        n = _check_keys(
            r["NoncurrentVersionExpiration"],
            i,
            "NoncurrentVersionExpiration",
            {"NoncurrentDays", "NewerNoncurrentVersions"},
        )
        if "NoncurrentDays" not in n:
            raise _bad(i, "NoncurrentVersionExpiration needs NoncurrentDays")
        fields["noncurrent_days"] = _int(n["NoncurrentDays"], i, "NoncurrentDays", 1)
        fields["newer_noncurrent"] = _int(
            n.get("NewerNoncurrentVersions", 0), i, "NewerNoncurrentVersions", 0, 100
        )
    if "AbortIncompleteMultipartUpload" in r:
        a = _check_keys(
            r["AbortIncompleteMultipartUpload"],
            i,
            "AbortIncompleteMultipartUpload",
            {"DaysAfterInitiation"},
        )
        if flt.tags:
            raise _bad(i, "AbortIncompleteMultipartUpload cannot be used with a tag filter")
        if "DaysAfterInitiation" not in a:
            raise _bad(i, "AbortIncompleteMultipartUpload needs DaysAfterInitiation")
        fields["abort_days"] = _int(a["DaysAfterInitiation"], i, "DaysAfterInitiation", 1)
    if "Transitions" in r:
        fields["transitions"] = _transitions(r["Transitions"], i, noncurrent=False)
    if "NoncurrentVersionTransitions" in r:
        fields["noncurrent_transitions"] = _transitions(
            r["NoncurrentVersionTransitions"], i, noncurrent=True
        )
    if not fields:
        raise _bad(i, "a rule needs at least one action")
    return Rule(id=rule_id, enabled=status == "Enabled", filter=flt, **fields)


def parse_policy(config: Any) -> Policy:
    """A lifecycle configuration in boto3's shape (``{"Rules": [...]}``) as a Policy.
    InvalidRequest naming the rule and the problem when it is not a valid one."""
    if not isinstance(config, dict):
        raise _bad(None, "must be an object with Rules")
    unknown = set(config) - {"Rules", "TransitionDefaultMinimumObjectSize"}
    if unknown:
        raise _bad(None, f"unknown field(s) {sorted(unknown)}; expected Rules")
    rules = config.get("Rules")
    if not isinstance(rules, list) or not rules:
        raise _bad(None, "Rules must be a non-empty list")
    if len(rules) > MAX_RULES:
        raise _bad(None, f"at most {MAX_RULES} rules")
    parsed = tuple(_rule(raw, i) for i, raw in enumerate(rules))
    ids = [r.get("ID") for r in rules if isinstance(r, dict) and "ID" in r]
    if len(set(ids)) != len(ids):
        raise _bad(None, "rule IDs must be unique")
    return Policy(parsed)


def validate_policy_json(text: str) -> Policy:
    """Parse the ``policy`` job parameter (JSON of the S3 schema). InvalidRequest if bad."""
    try:
        config = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"policy is not valid JSON: {exc}") from None
    return parse_policy(config)


def config_to_json(config: Mapping[str, Any]) -> str:
    """A configuration as boto3 returns it (dates as datetime) in the JSON the parser takes."""
    return json.dumps(config, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))


def parse_as_of(text: str | None, default: datetime) -> datetime:
    """The ``asOf`` parameter (ISO-8601 date-time; naive means UTC). InvalidRequest if bad."""
    if not text:
        return default
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"asOf is not an ISO-8601 date-time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
