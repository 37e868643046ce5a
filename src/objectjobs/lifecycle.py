"""S3 lifecycle configurations: parse and validate them, and evaluate them as of a moment.

Pure: no I/O. The job handler (``objectjobs.jobs.lifecycle_update``) lists, fetches tags
and heads where needed, and applies the decisions made here.

Semantics (S3's, as documented for lifecycle rules; where S3 leaves a corner open we follow
MinIO, the reference S3-compatible implementation):

- Days-based due times: ``last_modified + Days`` rounded up to the next midnight UTC, i.e.
  ``midnight(floor_day(t) + Days + 1)`` — an object written at 10:30 on the 15th with
  ``Days=3`` expires at 00:00 on the 19th. Noncurrent days count from the moment the version
  became noncurrent: the last-modified time of the next newer version (or marker).
- ``Date`` expires every matching current version once ``as_of`` reaches it.
- ``NewerNoncurrentVersions=N`` retains the N newest noncurrent versions whatever their age.
- A current delete marker with no other version of its key is an "expired object delete
  marker": removed by ``ExpiredObjectDeleteMarker``, and (as S3 and MinIO do) by an
  ``Expiration`` with ``Days`` once the marker itself is that old.
- Precedence when several rules match a version: expiration/deletion wins over transition;
  between expirations the earliest due time wins (it names the rule); between transitions
  the one due latest (the furthest step of the lifecycle) wins.
- One evaluation pass, like one S3 lifecycle run: a version made noncurrent by this pass (or
  by anyone after ``stable_before``, the job's start) is not aged further in the same job —
  that keeps a re-run after a crash from deleting more than the uninterrupted run would.
- Delete markers have no size and no tags: size predicates do not exclude them, tag
  predicates do. Uploads have neither: only the prefix applies to them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from objectjobs.errors import InvalidRequest
from objectjobs.storage.interface import MultipartUpload, ObjectInfo, ObjectVersion

EXPIRE = "expire"
DELETE_MARKER = "deleteMarker"
DELETE_VERSION = "deleteVersion"
ABORT_UPLOAD = "abortUpload"
TRANSITION = "transition"
KEEP = "keep"
SKIP = "skip"

MAX_RULES = 1000
_STORAGE_CLASS = re.compile(r"^[A-Z0-9_]{1,64}$")
_DAY = timedelta(days=1)


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
    def _screens(self) -> dict[datetime, _CurrentScreen | None]:
        return {}

    def screen(self, as_of: datetime) -> _CurrentScreen | None:
        """The current-version screen of this policy at ``as_of`` (None: not available,
        evaluate in full); made once per moment, as every batch of a job asks for it."""
        screens = self._screens
        if as_of not in screens:
            if len(screens) > 16:  # a long-lived policy asked about many moments
                screens.clear()
            screens[as_of] = _CurrentScreen.make(self, as_of)
        return screens[as_of]


@dataclass(slots=True)
class Decision:
    """What to do with one version (or upload): ``action`` and why (rule id or reason).
    Treat it as immutable (``dataclasses.replace`` for a changed copy); not frozen because
    every listed version gets one, twice per job, and a frozen one costs twice as much."""

    key: str
    version_id: str | None
    action: str
    size: int = 0
    rule_id: str = ""
    reason: str = ""
    storage_class: str | None = None  # a transition's target
    is_delete_marker: bool = False


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


# --- time arithmetic -------------------------------------------------------------------


def due_after_days(start: datetime, days: int) -> datetime:
    """S3's due time: ``start + days`` rounded up to the next midnight UTC."""
    if start.tzinfo is not UTC:  # listings give UTC already: skip the conversion then
        start = start.astimezone(UTC)
    midnight = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return midnight + timedelta(days=days + 1)


# --- evaluation ------------------------------------------------------------------------


def tag_filtered(policy: Policy) -> bool:
    return any(r.filter.tags for r in policy.active)


def needs_tags(policy: Policy, group: Sequence[ObjectVersion]) -> list[ObjectVersion]:
    """The versions of a key whose tags decide a rule (a tag-filtered rule with an action for
    that kind of version matches them otherwise): fetch tags for these only."""
    out = []
    for i, v in enumerate(group):
        if v.is_delete_marker:
            continue
        current = i == 0 and v.is_latest
        for rule in policy.active:
            if not rule.filter.tags:
                continue
            if current:
                acts = rule.expiration_days or rule.expiration_date or rule.transitions
            else:
                acts = rule.noncurrent_days or rule.noncurrent_transitions
            if acts and rule.filter.matches(v.key, v.size, {k: x for k, x in rule.filter.tags}):
                out.append(v)
                break
    return out


def _pick_expiry(candidates: list[tuple[datetime, str]], as_of: datetime) -> str | None:
    due = [c for c in candidates if c[0] <= as_of]
    return min(due)[1] if due else None


class _CurrentScreen:
    """``_current`` for the common case, without computing a due time per version.

    ``due_after_days(t, days) <= as_of`` holds exactly when ``t`` is before one moment per
    (days, as_of): the midnight after ``as_of - (days + 1)`` days, floored to UTC midnight.
    So each rule's Days-based actions become a threshold computed once, and a Date-based
    one a constant. A version with exactly one due expiration, or none and no due
    transition, is decided here; anything else (two due expirations to rank, a due
    transition, a naive timestamp) goes to ``_current``, which decides every case.
    """

    __slots__ = ("as_of", "policy", "rules")

    def __init__(self, policy: Policy, as_of: datetime, rules: list[_Screened]) -> None:
        self.policy = policy
        self.as_of = as_of
        self.rules = rules

    @classmethod
    def make(cls, policy: Policy, as_of: datetime) -> _CurrentScreen | None:
        rules: list[_Screened] = []
        try:
            for r in policy.active:
                f = r.filter
                trivial = not (f.prefix or f.tags or f.size_gt is not None or f.size_lt is not None)
                expire_before = None
                if r.expiration_days is not None:
                    expire_before = _due_before(as_of, r.expiration_days)
                expired_by_date = r.expiration_date is not None and r.expiration_date <= as_of
                moves: list[datetime | bool] = [
                    (t.date <= as_of) if t.date is not None else _due_before(as_of, t.days or 0)
                    for t in r.transitions
                ]
                rules.append((r.id, None if trivial else f, expire_before, expired_by_date, moves))
        except OverflowError:  # Days beyond the calendar: the full evaluation says what then
            return None
        return cls(policy, as_of, rules)

    def decide(self, v: ObjectVersion, tags: Mapping[str, str] | None) -> Decision:
        modified = v.last_modified
        if modified.tzinfo is None:
            return _current(self.policy, v, tags, self.as_of)
        expired_by = None
        for rule_id, flt, expire_before, expired_by_date, moves in self.rules:
            if flt is not None and not flt.matches(v.key, v.size, tags):
                continue
            if (expire_before is not None and modified < expire_before) or expired_by_date:
                if expired_by is not None:  # two rules due: _current ranks them
                    return _current(self.policy, v, tags, self.as_of)
                expired_by = rule_id
            # a due transition, unless an expiration wins: _current picks which one
            if (
                moves
                and expired_by is None
                and any(m is True or (m is not False and modified < m) for m in moves)
            ):
                return _current(self.policy, v, tags, self.as_of)
        if expired_by is not None:
            return Decision(v.key, v.version_id, EXPIRE, v.size, expired_by)
        return Decision(v.key, v.version_id, KEEP, v.size)


#: a screened rule: id, filter (None when it matches everything), the moment a version
#: must be modified before for its Days expiration to be due, whether its Date expiration
#: is due, and per transition: due (a Date's) or the same kind of moment (a Days one)
_Screened = tuple[str, Filter | None, datetime | None, bool, list[datetime | bool]]


def _due_before(as_of: datetime, days: int) -> datetime:
    """The moment ``t`` must precede for ``due_after_days(t, days) <= as_of``."""
    latest = (as_of - timedelta(days=days + 1)).astimezone(UTC)
    return datetime(latest.year, latest.month, latest.day, tzinfo=UTC) + _DAY


def _current(
    policy: Policy, v: ObjectVersion, tags: Mapping[str, str] | None, as_of: datetime
) -> Decision:
    expiries: list[tuple[datetime, str]] = []
    moves: list[tuple[datetime, str, str]] = []
    for rule in policy.active:
        if not rule.filter.matches(v.key, v.size, tags):
            continue
        if rule.expiration_days is not None:
            expiries.append((due_after_days(v.last_modified, rule.expiration_days), rule.id))
        if rule.expiration_date is not None:
            expiries.append((rule.expiration_date, rule.id))
        for t in rule.transitions:
            when = t.date if t.date is not None else due_after_days(v.last_modified, t.days or 0)
            moves.append((when, rule.id, t.storage_class))
    rule_id = _pick_expiry(expiries, as_of)
    if rule_id is not None:
        return Decision(v.key, v.version_id, EXPIRE, v.size, rule_id)
    return _transition(v, moves, as_of)


def _transition(
    v: ObjectVersion, moves: list[tuple[datetime, str, str]], as_of: datetime
) -> Decision:
    due = sorted(m for m in moves if m[0] <= as_of)
    if not due:
        return Decision(v.key, v.version_id, KEEP, v.size)
    _, rule_id, storage_class = due[-1]
    if v.storage_class == storage_class:
        return Decision(v.key, v.version_id, KEEP, v.size, rule_id, f"already {storage_class}")
    return Decision(v.key, v.version_id, TRANSITION, v.size, rule_id, storage_class=storage_class)


def _lone_marker(policy: Policy, v: ObjectVersion, as_of: datetime) -> Decision:
    expiries: list[tuple[datetime, str]] = []
    for rule in policy.active:
        if not rule.filter.matches(v.key, None, None):
            continue
        if rule.expired_object_delete_marker:
            expiries.append((v.last_modified, rule.id))
        elif rule.expiration_days is not None:
            expiries.append((due_after_days(v.last_modified, rule.expiration_days), rule.id))
    rule_id = _pick_expiry(expiries, as_of)
    if rule_id is None:
        return Decision(v.key, v.version_id, KEEP, is_delete_marker=True)
    return Decision(v.key, v.version_id, DELETE_MARKER, 0, rule_id, is_delete_marker=True)


def _noncurrent(
    policy: Policy,
    v: ObjectVersion,
    since: datetime,
    newer: int,
    tags: Mapping[str, str] | None,
    as_of: datetime,
) -> Decision:
    size = None if v.is_delete_marker else v.size
    expiries: list[tuple[datetime, str]] = []
    moves: list[tuple[datetime, str, str]] = []
    for rule in policy.active:
        if not rule.filter.matches(v.key, size, tags):
            continue
        if rule.noncurrent_days is not None and newer >= rule.newer_noncurrent:
            expiries.append((due_after_days(since, rule.noncurrent_days), rule.id))
        for t in rule.noncurrent_transitions:
            if newer >= t.newer_noncurrent and not v.is_delete_marker:
                moves.append((due_after_days(since, t.days or 0), rule.id, t.storage_class))
    rule_id = _pick_expiry(expiries, as_of)
    if rule_id is not None:
        return Decision(
            v.key,
            v.version_id,
            DELETE_VERSION,
            size or 0,
            rule_id,
            is_delete_marker=v.is_delete_marker,
        )
    if v.is_delete_marker:
        return Decision(v.key, v.version_id, KEEP, is_delete_marker=True)
    return _transition(v, moves, as_of)


def evaluate_key(
    policy: Policy,
    group: Sequence[ObjectVersion],
    *,
    as_of: datetime,
    stable_before: datetime,
    tags: Mapping[tuple[str, str | None], Mapping[str, str]] | None = None,
) -> list[Decision]:
    """Decide every version of one key (``group``: newest first, as listed). ``tags`` maps
    (key, version_id) to the tags of the versions ``needs_tags`` named."""
    if len(group) == 1:  # the common case: one current version (any unversioned bucket)
        v = group[0]
        if v.is_latest and not v.is_delete_marker:
            screen = policy.screen(as_of)
            if screen is not None:
                return [screen.decide(v, tags.get((v.key, v.version_id)) if tags else None)]
    tags = tags or {}
    out: list[Decision] = []
    noncurrent_seen = 0
    for i, v in enumerate(group):
        vtags = tags.get((v.key, v.version_id))
        if i == 0 and v.is_latest:
            if not v.is_delete_marker:
                out.append(_current(policy, v, vtags, as_of))
            elif len(group) == 1:
                out.append(_lone_marker(policy, v, as_of))
            else:
                out.append(Decision(v.key, v.version_id, KEEP, is_delete_marker=True))
            continue
        # became noncurrent when the next newer version was written
        since = group[i - 1].last_modified if i > 0 else v.last_modified
        if since >= stable_before:
            out.append(
                Decision(
                    v.key,
                    v.version_id,
                    KEEP,
                    0 if v.is_delete_marker else v.size,
                    reason="became noncurrent after the job started",
                    is_delete_marker=v.is_delete_marker,
                )
            )
        else:
            out.append(_noncurrent(policy, v, since, noncurrent_seen, vtags, as_of))
        noncurrent_seen += 1
    return out


def evaluate_upload(policy: Policy, upload: MultipartUpload, as_of: datetime) -> Decision:
    expiries = [
        (due_after_days(upload.initiated, rule.abort_days), rule.id)
        for rule in policy.active
        if rule.abort_days is not None and rule.filter.matches(upload.key, None, None)
    ]
    rule_id = _pick_expiry(expiries, as_of)
    action = ABORT_UPLOAD if rule_id is not None else KEEP
    return Decision(upload.key, upload.upload_id, action, 0, rule_id or "")


def protection(info: ObjectInfo, now: datetime) -> str | None:
    """Why a version must not be deleted now (Object Lock, legal hold, pending replication),
    or None. Retention is judged at ``now``, never at ``asOf``: the store refuses by now."""
    meta = info.meta
    if meta.legal_hold:
        return "protected by an Object Lock legal hold"
    until = meta.object_lock_retain_until
    if until is not None and until > now:
        mode = meta.object_lock_mode or "retention"
        return f"retained by Object Lock ({mode}) until {until.isoformat()}"
    if (info.replication_status or "").upper() == "PENDING":
        return "replication is still pending"
    return None
