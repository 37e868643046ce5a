"""TRIGGER_RECONCILIATION (SPEC §3.6): send the ObjectCreated events a bucket's consumers
may have missed, at least once, and only once more per ledger entry.

Each current object matching a creation rule of the bucket's notification configuration
(and ``modifiedAfter`` < last-modified < ``modifiedBefore`` when given) makes one event per
matching rule, delivered to the target ``notify.targets."<rule's ARN>"`` names. The delivery
ledger ``trigger:<bucket>`` records each event delivered, keyed by rule, key and version
id (or ETag when unversioned): see :func:`objectjobs.events.ledger_key`.

- It lists versions, not just objects, because a record names the version id of a
  versioned object (and the ledger keys on it); only current versions make events.
- The plan, made while EXAMINING lists the bucket, is per object ``emit`` (some event not
  in the ledger), ``skip`` (all its events delivered before), ``unmatched`` (no rule, or
  outside the time window) or ``noncurrent`` (an older version or a delete marker).
- EXECUTE delivers the missing events through ``ctx.run_each`` (per-event retries with
  backoff and jitter for retryable delivery errors) and records each one in the ledger
  once it is accepted, in background transactions a few ms apart, all committed before
  the batch's checkpoint: a crash re-delivers at most the events in flight and those
  accepted but not yet committed (bounded per task by ``MAX_UNRECORDED``, see
  ``_LedgerWriter``). ``force=true`` sends every matching event again.
- Reports: one result per matching object (``emit`` SUCCEEDED/FAILED, or ``skip``
  SKIPPED); unmatched and noncurrent ones only count as processed and skipped.

It only reads the bucket: listing, and a HEAD when a listing has no ETag (local files
written by another tool).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from objectjobs import events
from objectjobs.errors import (
    ConfigurationNotFound,
    DeliveryError,
    InvalidRequest,
    JobFailed,
    JobStoreError,
    NotSupported,
    ObjectJobsError,
    ObjectNotFound,
)
from objectjobs.events import EventObject, NotificationRule
from objectjobs.handler import ExecBatch, JobContext, JobHandler, KeyGroup, PlanBatch
from objectjobs.models import NewJob, Outcome, Progress, ResultRecord
from objectjobs.notify import DeliveryTarget, open_target
from objectjobs.params import parse_iso8601
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion, Storage
from objectjobs.store.interface import JobStore

EVENT_ID_HEADER = "X-ObjectJobs-Event-Id"
#: events a task may have delivered but not yet recorded in the ledger before its senders
#: wait for the ledger: what a crash may repeat, beyond the deliveries in flight
MAX_UNRECORDED = 256
#: how long the first unrecorded event waits for others to share its ledger transaction
LEDGER_LINGER_S = 0.025


def ledger_name(bucket: str) -> str:
    return f"trigger:{bucket}"


async def read_rules(storage: Storage, bucket: str) -> list[NotificationRule]:
    """The bucket's creation rules. InvalidRequest says why there are none to reconcile."""
    try:
        config = await storage.get_bucket_config(bucket, "notification")
    except ConfigurationNotFound:
        raise InvalidRequest(f"bucket {bucket!r} has no notification configuration") from None
    except NotSupported as exc:
        raise InvalidRequest(
            f"the storage cannot read notification configurations: {exc.message}"
        ) from None
    rules = events.creation_rules(events.parse_rules(config))
    if not rules:
        raise InvalidRequest(
            f"the notification configuration of {bucket!r} has no rule for ObjectCreated events"
        )
    return rules


def check_targets(rules: Sequence[NotificationRule], settings: Settings) -> None:
    """InvalidRequest naming every destination ARN no ``notify.targets`` entry maps."""
    missing = sorted({r.arn for r in rules} - set(settings.notify.targets))
    if missing:
        raise InvalidRequest(
            "no delivery target configured for "
            + ", ".join(repr(arn) for arn in missing)
            + ' (set notify.targets."<arn>" in the configuration)'
        )


@dataclass(frozen=True)
class _Window:
    after: datetime | None
    before: datetime | None

    @classmethod
    def of(cls, params: dict[str, str]) -> _Window:
        after, before = params.get("modifiedAfter"), params.get("modifiedBefore")
        return cls(
            parse_iso8601("modifiedAfter", after) if after else None,
            parse_iso8601("modifiedBefore", before) if before else None,
        )

    def holds(self, moment: datetime) -> bool:
        return (self.after is None or moment > self.after) and (
            self.before is None or moment < self.before
        )


class _LedgerWriter:
    """Records delivered events in the ledger as they are accepted, in the background.

    Deliveries do not wait for it: waiting would pace them by the commit latency, which
    under load (the store's one SQLite writer shared with checkpoints, heartbeats and the
    other tasks) reached ~45 ms, capping a task at ~2 x concurrency events per commit.
    A transaction starts ``LEDGER_LINGER_S`` after the first key that waits, or at once
    when ``limit // 2`` keys wait, a sender is held or the batch ends (``drain``), and
    takes every key waiting; ``add`` holds its sender only once ``limit`` keys wait.

    A crash therefore repeats at most the events in flight, those waiting (fewer than
    ``limit`` plus the concurrency) and those of the transaction being committed."""

    def __init__(self, store: JobStore, ledger: str, limit: int) -> None:
        self._store = store
        self._ledger = ledger
        self._limit = max(1, limit)
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._held = 0  # senders waiting in add
        self._draining = False

    async def add(self, key: str) -> None:
        self._pending.append(key)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        if len(self._pending) >= self._limit // 2:
            self._hurry.set()
        if len(self._pending) >= self._limit:
            # back-pressure: bounds what a crash could repeat
            self._held += 1
            try:
                await asyncio.shield(self._flusher)
            finally:
                self._held -= 1

    async def _flush(self) -> None:
        while self._pending:
            if not (self._draining or self._held or self._hurry.is_set()):
                # a few more keys per transaction: each costs ~1 ms of the event loop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LEDGER_LINGER_S):
                        await self._hurry.wait()
            self._hurry.clear()
            batch, self._pending = self._pending, []
            await self._store.ledger_add(self._ledger, batch)

    async def drain(self) -> None:
        """Wait until every key added is stored; raises the store's error if any."""
        self._draining = True
        self._hurry.set()
        try:
            while self._flusher is not None:
                flusher = self._flusher
                await flusher  # a JobStoreError propagates: the task is retried later
                if flusher is self._flusher and not self._pending:
                    self._flusher = None
            if self._pending:
                await self._flush()
        finally:
            self._draining = False

    def abandon(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()


@dataclass
class _Item:
    """One object of a batch and the events it makes."""

    obj: EventObject
    events: list[tuple[NotificationRule, str]]  # (rule, ledger key)


class TriggerReconciliation(JobHandler):
    listing = "versions"
    # planning is a ledger lookup per batch: EXAMINING does it as it lists, saving a listing
    plans_while_examining = True

    async def validate(self, job: NewJob, storage: Storage, settings: Settings) -> None:
        _Window.of(job.params)
        check_targets(await read_rules(storage, job.bucket), settings)

    async def prepare(self, ctx: JobContext) -> None:
        await self._rules(ctx)

    async def plan(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> PlanBatch:
        items = await self._items(ctx, groups)
        missing = await self._missing(ctx, items)
        decided = PlanBatch(evaluated=sum(len(g) for g in groups))
        for group in groups:
            for version in group:
                if not _is_current(version):
                    decided.add("noncurrent", version.size)
        for item in items:
            if not item.events:
                decided.add("unmatched", item.obj.size)
            elif any(lkey in missing for _, lkey in item.events):
                decided.add("emit", item.obj.size)
            else:
                decided.add("skip", item.obj.size)
        return decided

    async def execute(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> ExecBatch:
        items = await self._items(ctx, groups)
        missing = await self._missing(ctx, items)
        writer: _LedgerWriter = ctx.resources.setdefault(
            "ledger",
            _LedgerWriter(ctx.store, ledger_name(ctx.job.bucket), MAX_UNRECORDED),
        )
        sends = [
            (item, rule, lkey) for item in items for rule, lkey in item.events if lkey in missing
        ]
        targets = self._targets(ctx, {rule.arn for _, rule, _ in sends})
        bucket, job_header = ctx.job.bucket, str(ctx.job.id)
        bodies = self._bodies(ctx)

        async def send(one: tuple[_Item, NotificationRule, str]) -> None:
            item, rule, lkey = one
            body = bodies[rule].body(item.obj, datetime.now(UTC))
            headers = {EVENT_ID_HEADER: _event_id(bucket, lkey), "X-ObjectJobs-Job-Id": job_header}
            await targets[rule.arn].deliver(body, headers=headers)
            await writer.add(lkey)

        outcomes = await ctx.run_each(send, sends)
        await writer.drain()
        failures: dict[int, list[str]] = {}
        codes: dict[int, str] = {}
        for (item, rule, _), outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, JobStoreError):
                raise outcome  # the ledger is unwritable: the task is retried later
            if isinstance(outcome, BaseException):
                failures.setdefault(id(item), []).append(f"rule {rule.id}: {_why(outcome)}")
                codes[id(item)] = getattr(outcome, "code", "DeliveryFailed")
        sent_items = {id(item) for item, _, _ in sends}
        done = ExecBatch()
        noncurrent = sum(1 for g in groups for v in g if not _is_current(v))
        done.progress += Progress(processed=noncurrent, skipped=noncurrent)
        for item in items:
            obj = item.obj
            if not item.events:
                done.progress += Progress(processed=1, skipped=1)
            elif id(item) in failures:
                done.record(
                    ResultRecord(
                        obj.key,
                        obj.version_id,
                        "emit",
                        Outcome.FAILED,
                        codes[id(item)],
                        "; ".join(failures[id(item)]),
                    )
                )
            elif id(item) in sent_items:
                done.record(ResultRecord(obj.key, obj.version_id, "emit", Outcome.SUCCEEDED))
            else:
                done.record(
                    ResultRecord(
                        obj.key,
                        obj.version_id,
                        "skip",
                        Outcome.SKIPPED,
                        message="already delivered",
                    )
                )
        return done

    async def finish(self, ctx: JobContext) -> None:
        writer: _LedgerWriter | None = ctx.resources.pop("ledger", None)
        if writer is not None:
            writer.abandon()  # stopped mid-batch: unrecorded events are simply sent again
        targets: dict[str, DeliveryTarget] = ctx.resources.pop("targets", {})
        for target in targets.values():
            await target.close()

    # --- helpers ------------------------------------------------------------------------

    async def _rules(self, ctx: JobContext) -> list[NotificationRule]:
        rules: list[NotificationRule] | None = ctx.resources.get("rules")
        if rules is None:
            try:
                rules = await read_rules(ctx.storage, ctx.job.bucket)
                check_targets(rules, ctx.settings)
            except InvalidRequest as exc:
                raise JobFailed(exc.message) from None
            ctx.resources["rules"] = rules
        return rules

    def _bodies(self, ctx: JobContext) -> dict[NotificationRule, events.EventBodies]:
        """Per rule, the maker of its event bodies for this job."""
        bodies: dict[NotificationRule, events.EventBodies] | None = ctx.resources.get("bodies")
        if bodies is None:
            region, job_id, bucket = ctx.settings.storage.region, ctx.job.id, ctx.job.bucket
            bodies = {
                rule: events.EventBodies(rule, bucket=bucket, region=region, job_id=job_id)
                for rule in ctx.resources["rules"]
            }
            ctx.resources["bodies"] = bodies
        return bodies

    def _targets(self, ctx: JobContext, arns: set[str]) -> dict[str, DeliveryTarget]:
        targets: dict[str, DeliveryTarget] = ctx.resources.setdefault("targets", {})
        for arn in arns - set(targets):
            settings = ctx.settings.notify.targets.get(arn)
            if settings is None:
                raise JobFailed(f"no delivery target configured for {arn!r}")
            targets[arn] = open_target(settings)
        return targets

    async def _items(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> list[_Item]:
        rules = await self._rules(ctx)
        window: _Window = ctx.resources.get("window") or _Window.of(ctx.params)
        ctx.resources["window"] = window
        current = [v for group in groups for v in group if _is_current(v)]
        unknown = [v for v in current if v.etag is None]
        known: dict[str, Any] = {}
        if unknown:
            heads = await ctx.run_each(self._with_etag(ctx), unknown)
            known = {v.key: h for v, h in zip(unknown, heads, strict=True)}
        items = []
        for version in current:
            if version.etag is None:
                headed = known[version.key]
                if isinstance(headed, BaseException):
                    if not isinstance(headed, ObjectNotFound):
                        raise headed
                    # deleted since the listing: nothing to announce
                    items.append(_Item(_event_object(version), []))
                    continue
                version = headed
            obj = _event_object(version)
            found: list[tuple[NotificationRule, str]] = []
            if window.holds(version.last_modified):
                identity = _identity(version)
                found = [
                    (rule, events.ledger_key(rule, version.key, identity))
                    for rule in events.matching_rules(rules, version.key)
                ]
            items.append(_Item(obj, found))
        return items

    @staticmethod
    def _with_etag(ctx: JobContext) -> Any:
        async def head(version: ObjectVersion) -> ObjectVersion:
            info = await ctx.storage.head(ctx.job.bucket, version.key, version.version_id)
            return replace(
                version, etag=info.etag, size=info.size, last_modified=info.last_modified
            )

        return head

    async def _missing(self, ctx: JobContext, items: Sequence[_Item]) -> set[str]:
        keys = [lkey for item in items for _, lkey in item.events]
        if ctx.params.get("force", "false").lower() == "true":
            return set(keys)
        if not keys:
            return set()
        return await ctx.store.ledger_missing(ledger_name(ctx.job.bucket), keys)


def _event_object(version: ObjectVersion) -> EventObject:
    return EventObject(
        version.key, version.size, version.etag, version.version_id, version.last_modified
    )


def _is_current(version: ObjectVersion) -> bool:
    return version.is_latest and not version.is_delete_marker


def _identity(version: ObjectVersion) -> str:
    if version.version_id is not None and version.version_id != "null":
        return version.version_id
    return (version.etag or "").strip('"')


def _event_id(bucket: str, lkey: str) -> str:
    """A stable id per event (bucket, rule, key, version): consumers may deduplicate on it."""
    return hashlib.sha256(f"{bucket}\n{lkey}".encode()).hexdigest()[:32]


def _why(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError | ObjectJobsError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
