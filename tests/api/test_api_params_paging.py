"""Pure units: jobParams validation (SPEC §3.2-§3.6) and page tokens (§2.5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from objectjobs.errors import InvalidRequest
from objectjobs.models import JobType
from objectjobs.paging import PageTokens
from objectjobs.params import accepted_keys, parse_lifecycle_policy, validate_job_params
from objectjobs.store.interface import JobCursor

GOOD_POLICY = {
    "Rules": [
        {"ID": "a", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}},
        {
            "ID": "b",
            "Status": "Disabled",
            "Filter": {
                "And": {
                    "Prefix": "x/",
                    "Tags": [{"Key": "k", "Value": "v"}],
                    "ObjectSizeGreaterThan": 10,
                }
            },
            "NoncurrentVersionExpiration": {"NoncurrentDays": 5, "NewerNoncurrentVersions": 2},
            "Transitions": [{"Days": 0, "StorageClass": "GLACIER"}],
        },
        # S3 refuses AbortIncompleteMultipartUpload with a tag filter, so it has its own rule
        {
            "ID": "c",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
        },
        {"Status": "Enabled", "Prefix": "", "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"Status": "Enabled", "Filter": {}, "Expiration": {"Date": "2030-01-01T00:00:00Z"}},
    ]
}


@pytest.mark.parametrize(
    ("job_type", "params"),
    [
        (
            JobType.BATCH_REPLICATE,
            {
                "replicationFilter": "NEW",
                "target": "dr",
                "targetBucket": "copy",
                "prefix": "a/",
                "dryRun": "false",
                "maxFailurePercent": "12.5",
                "objectsPerSecond": "200",
            },
        ),
        (
            JobType.LIFECYCLE_UPDATE,
            {"policy": json.dumps(GOOD_POLICY), "asOf": "2031-01-01T00:00:00Z"},
        ),
        (JobType.METRIC_RECONCILIATION, {"fix": "false", "maxFailurePercent": "0"}),
        (
            JobType.TRIGGER_RECONCILIATION,
            {
                "modifiedAfter": "2024-01-01",
                "modifiedBefore": "2024-01-02T00:00:00+01:00",
                "force": "true",
            },
        ),
        (JobType.METRIC_RECONCILIATION, {}),
    ],
)
def test_valid_params(job_type: JobType, params: dict[str, str]) -> None:
    validate_job_params(job_type, params, targets={"dr"})


@pytest.mark.parametrize(
    ("job_type", "params", "named"),
    [
        (JobType.METRIC_RECONCILIATION, {"policy": "{}"}, "accepted"),
        (JobType.BATCH_REPLICATE, {"target": "dr"}, "target"),  # no target configured here
        (JobType.BATCH_REPLICATE, {"targetBucket": ""}, "targetBucket"),
        (JobType.METRIC_RECONCILIATION, {"objectsPerSecond": "nan"}, "objectsPerSecond"),
        (JobType.METRIC_RECONCILIATION, {"objectsPerSecond": "-3"}, "objectsPerSecond"),
        (JobType.METRIC_RECONCILIATION, {"maxFailurePercent": "inf"}, "maxFailurePercent"),
        (
            JobType.TRIGGER_RECONCILIATION,
            {"modifiedAfter": "2024-01-01T00:00:00Z", "modifiedBefore": "2024-01-01T00:00:00Z"},
            "earlier",
        ),
    ],
)
def test_invalid_params(job_type: JobType, params: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        validate_job_params(job_type, params)


def test_unknown_key_message_lists_accepted_keys() -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_job_params(JobType.LIFECYCLE_UPDATE, {"polcy": "{}"})
    for key in accepted_keys(JobType.LIFECYCLE_UPDATE):
        assert key in info.value.message


@pytest.mark.parametrize(
    "rules",
    [
        [],
        [{"Status": "Enabled"}],  # no action
        [{"Status": "enabled", "Expiration": {"Days": 1}}],
        [{"Status": "Enabled", "Expiration": {"Days": 0}}],
        [{"Status": "Enabled", "Expiration": {"Days": 1, "Date": "2030-01-01"}}],
        [{"Status": "Enabled", "Expiration": {"Days": "1"}}],
        [{"Status": "Enabled", "Expiration": {"Date": "soon"}}],
        [{"Status": "Enabled", "Expiration": {}}],
        [{"Status": "Enabled", "Expiration": {"ExpiredObjectDeleteMarker": "yes"}}],
        [{"Status": "Enabled", "NoncurrentVersionExpiration": {"NewerNoncurrentVersions": 1}}],
        [{"Status": "Enabled", "AbortIncompleteMultipartUpload": {}}],
        [{"Status": "Enabled", "Transitions": [{"Days": 1}]}],
        [
            {
                "Status": "Enabled",
                "Filter": {"Prefix": "a", "Tag": {"Key": "k", "Value": "v"}},
                "Expiration": {"Days": 1},
            }
        ],
        [{"Status": "Enabled", "Filter": {"Tag": {"Key": "k"}}, "Expiration": {"Days": 1}}],
        [{"Status": "Enabled", "Filter": {}, "Prefix": "", "Expiration": {"Days": 1}}],
        [{"Status": "Enabled", "Unknown": 1, "Expiration": {"Days": 1}}],
        [
            {"ID": "x", "Status": "Enabled", "Expiration": {"Days": 1}},
            {"ID": "x", "Status": "Enabled", "Expiration": {"Days": 2}},
        ],
    ],
)
def test_invalid_lifecycle_policies(rules: list[object]) -> None:
    with pytest.raises(InvalidRequest, match="policy"):
        parse_lifecycle_policy(json.dumps({"Rules": rules}))


def test_good_policy_parses() -> None:
    assert parse_lifecycle_policy(json.dumps(GOOD_POLICY)) == GOOD_POLICY
    with pytest.raises(InvalidRequest):
        parse_lifecycle_policy("[1]")


def test_page_tokens_roundtrip_and_refuse_tampering() -> None:
    tokens = PageTokens("secret-one-" * 4)
    cursor = JobCursor(datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), -42)
    scope = {"op": "jobs/list", "caller": 1, "bucket": "b"}
    token = tokens.issue_job_cursor(cursor, scope)
    assert tokens.open_job_cursor(token, dict(scope)) == cursor
    assert "2024" not in token  # opaque, not readable JSON
    for i in range(len(token)):
        forged = token[:i] + ("x" if token[i] != "x" else "y") + token[i + 1 :]
        with pytest.raises(InvalidRequest):
            tokens.open_job_cursor(forged, scope)
    with pytest.raises(InvalidRequest):
        tokens.open_job_cursor(token, {**scope, "bucket": "c"})
    with pytest.raises(InvalidRequest):
        PageTokens("secret-two-" * 4).open_job_cursor(token, scope)
    for junk in ("", "!!!", "a", "AAAA" * 10):
        with pytest.raises(InvalidRequest):
            tokens.open(junk, scope)
    assert tokens.open_int_cursor(tokens.issue(17, scope), scope) == 17


def test_page_tokens_accept_only_the_spelling_we_issued() -> None:
    """Base64 decoders ignore a last character's unused bits and stray characters."""
    tokens = PageTokens("secret-one-" * 4)
    scope = {"op": "jobs/list", "caller": 1}
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # Find cursors whose tokens leave unused bits in the final character (length % 4 != 0).
    padded = [tokens.issue(n, scope) for n in range(1, 40)]
    padded = [t for t in padded if len(t) % 4]
    assert padded
    for token in padded:
        for ch in alphabet.replace(token[-1], ""):
            with pytest.raises(InvalidRequest):
                tokens.open(token[:-1] + ch, scope)
        for stray in ("=", "==", " ", "\n", "+", "/"):
            with pytest.raises(InvalidRequest):
                tokens.open(token + stray, scope)
        assert tokens.open(token, scope) in range(1, 40)
