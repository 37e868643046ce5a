"""S3 lifecycle policies evaluated as of a moment (``lifecycle_policy`` parses them).

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from objectjobs.lifecycle_policy import Filter, Policy
from objectjobs.storage.interface import MultipartUpload, ObjectInfo, ObjectVersion

EXPIRE = "expire"
DELETE_MARKER = "deleteMarker"
DELETE_VERSION = "deleteVersion"
ABORT_UPLOAD = "abortUpload"
TRANSITION = "transition"
KEEP = "keep"
SKIP = "skip"

_DAY = timedelta(days=1)


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


def current_screen(policy: Policy, as_of: datetime) -> _CurrentScreen | None:
    """The current-version screen of ``policy`` at ``as_of`` (None: not available, evaluate
    in full); made once per moment and policy, as every batch of a job asks for it."""
    screens = policy.screens
    if as_of not in screens:
        if len(screens) > 16:  # a long-lived policy asked about many moments
            screens.clear()
        screens[as_of] = _CurrentScreen.make(policy, as_of)
    screen: _CurrentScreen | None = screens[as_of]
    return screen


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
            screen = current_screen(policy, as_of)
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
