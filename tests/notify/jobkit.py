"""Helpers of the TRIGGER_RECONCILIATION job tests (tests/jobs/test_trigger*.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from typing import Any
from urllib.parse import unquote_plus

from objectjobs.models import JobRecord, JobType, ResultRecord
from objectjobs.settings import NotifySettings, NotifyTargetSettings, Settings
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from tests.jobs import support
from tests.notify.receiver import Receiver


def with_targets(
    settings: Settings, targets: dict[str, NotifyTargetSettings], lease_s: float = 30.0
) -> Settings:
    """``settings`` with these delivery targets. The lease is long by default: on a busy
    machine a short one lapses while its task still runs, and the takeover then repeats the
    events in flight, which the exact-count tests would take for a bug."""
    worker = settings.worker.model_copy(update={"lease_s": lease_s})
    return settings.model_copy(update={"notify": NotifySettings(targets=targets), "worker": worker})


def webhook(receiver: Receiver, secret: str | None = None, **kw: Any) -> NotifyTargetSettings:
    return NotifyTargetSettings(kind="webhook", url=receiver.url, hmac_secret=secret, **kw)


def key_rule(
    arn_key: str, arn: str, rule_id: str, events: list[str], prefix: str = "", suffix: str = ""
) -> dict[str, Any]:
    rules = []
    if prefix:
        rules.append({"Name": "prefix", "Value": prefix})
    if suffix:
        rules.append({"Name": "suffix", "Value": suffix})
    rule: dict[str, Any] = {"Id": rule_id, arn_key: arn, "Events": events}
    if rules:
        rule["Filter"] = {"Key": {"FilterRules": rules}}
    return rule


async def run_job(
    store: JobStore,
    owner: int,
    settings: Settings,
    storage: Storage,
    bucket: str,
    **params: str,
) -> JobRecord:
    return await support.run_job(
        store, owner, settings, storage, bucket, JobType.TRIGGER_RECONCILIATION, **params
    )


async def all_results(store: JobStore, job_id: int) -> list[ResultRecord]:
    out: list[ResultRecord] = []
    after = None
    while True:
        page = await store.list_results(job_id, after=after, limit=1000)
        if not page:
            return out
        out.extend(r for _, r in page)
        after = page[-1][0]


def delivered(receiver: Receiver) -> Counter[tuple[str, str]]:
    """(configurationId, decoded key) of every accepted record, with multiplicity. Every
    record must be a reconciliation record (not, say, a live event of the server)."""
    records = receiver.records()
    assert all(r.get("objectjobs", {}).get("reconciliation") is True for r in records)
    return Counter(
        (r["s3"]["configurationId"], unquote_plus(r["s3"]["object"]["key"])) for r in records
    )


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)
