"""Pure semantics of ``objectjobs.lifecycle``: parsing, date arithmetic, precedence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from objectjobs import lifecycle as lc
from objectjobs import lifecycle_policy as lp
from objectjobs.errors import InvalidRequest
from objectjobs.storage.interface import MultipartUpload, ObjectInfo, ObjectMeta, ObjectVersion


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


FAR = at("2100-01-01T00:00:00")  # job start long after every test version


def ver(
    key: str, vid: str, when: str, *, latest: bool = False, marker: bool = False, size: int = 10
) -> ObjectVersion:
    return ObjectVersion(key, vid, latest, marker, 0 if marker else size, None, at(when))


def policy(*rules: dict[str, Any]) -> lp.Policy:
    full = [{"Status": "Enabled", "Filter": {}, "ID": f"r{i}", **r} for i, r in enumerate(rules)]
    return lp.parse_policy({"Rules": full})


def actions(p: lp.Policy, group: list[ObjectVersion], as_of: str, **kw: Any) -> list[str]:
    return [d.action for d in lc.evaluate_key(p, group, as_of=at(as_of), stable_before=FAR, **kw)]


# --- date arithmetic -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        ("2014-01-15T10:30:00", 3, "2014-01-19T00:00:00"),  # AWS's documented example
        ("2014-01-15T00:00:00", 1, "2014-01-17T00:00:00"),  # exact midnight still rounds up
        ("2014-01-15T23:59:59", 1, "2014-01-17T00:00:00"),
        ("2016-02-28T12:00:00", 1, "2016-03-01T00:00:00"),  # leap year
        ("2014-12-31T01:00:00", 30, "2015-01-31T00:00:00"),
    ],
)
def test_due_rounds_up_to_next_midnight_utc(start: str, days: int, due: str) -> None:
    assert lc.due_after_days(at(start), days) == at(due)


def test_due_converts_other_timezones_to_utc() -> None:
    start = datetime(2014, 1, 15, 23, 30, tzinfo=UTC) + timedelta()  # 23:30 UTC
    local = start.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))  # 08:30 next day
    assert lc.due_after_days(local, 1) == at("2014-01-17T00:00:00")


def test_expiration_days_boundary() -> None:
    p = policy({"Expiration": {"Days": 3}})
    group = [ver("k", "v1", "2014-01-15T10:30:00", latest=True)]
    assert actions(p, group, "2014-01-18T23:59:59") == ["keep"]
    assert actions(p, group, "2014-01-19T00:00:00") == ["expire"]


def test_expiration_date_applies_to_every_current_version_from_that_day() -> None:
    p = policy({"Expiration": {"Date": "2020-06-01T00:00:00Z"}})
    group = [ver("k", "v1", "2020-05-31T23:00:00", latest=True)]
    assert actions(p, group, "2020-05-31T23:59:59") == ["keep"]
    assert actions(p, group, "2020-06-01T00:00:00") == ["expire"]


def test_noncurrent_days_count_from_the_successor() -> None:
    p = policy({"NoncurrentVersionExpiration": {"NoncurrentDays": 2}})
    group = [
        ver("k", "v3", "2020-01-10T12:00:00", latest=True),
        ver("k", "v2", "2020-01-05T12:00:00"),  # noncurrent since Jan 10 -> due Jan 13
        ver("k", "v1", "2020-01-01T12:00:00"),  # noncurrent since Jan 5 -> due Jan 8
    ]
    assert actions(p, group, "2020-01-07T23:00:00") == ["keep", "keep", "keep"]
    assert actions(p, group, "2020-01-08T00:00:00") == ["keep", "keep", "deleteVersion"]
    assert actions(p, group, "2020-01-13T00:00:00") == ["keep", "deleteVersion", "deleteVersion"]


def test_newer_noncurrent_versions_are_retained() -> None:
    p = policy({"NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 2}})
    group = [ver("k", f"v{i}", f"2020-01-0{i}T00:00:00") for i in range(5, 0, -1)]
    group[0] = ver("k", "v5", "2020-01-05T00:00:00", latest=True)
    assert actions(p, group, "2021-01-01T00:00:00") == [
        "keep",
        "keep",
        "keep",
        "deleteVersion",
        "deleteVersion",
    ]


def test_noncurrent_delete_marker_counts_and_expires() -> None:
    p = policy({"NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    group = [
        ver("k", "v3", "2020-01-03T00:00:00", latest=True),
        ver("k", "m2", "2020-01-02T00:00:00", marker=True),
        ver("k", "v1", "2020-01-01T00:00:00"),
    ]
    assert actions(p, group, "2021-01-01T00:00:00") == ["keep", "deleteVersion", "deleteVersion"]


def test_version_made_noncurrent_after_the_job_started_is_not_aged() -> None:
    p = policy({"NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    group = [
        ver("k", "m", "2020-02-01T00:00:00", latest=True, marker=True),
        ver("k", "v1", "2020-01-01T00:00:00"),
    ]
    decided = lc.evaluate_key(
        p, group, as_of=at("2021-01-01T00:00:00"), stable_before=at("2020-02-01T00:00:00")
    )
    assert [d.action for d in decided] == ["keep", "keep"]
    assert "after the job started" in decided[1].reason


# --- precedence ------------------------------------------------------------------------


def test_expiration_wins_over_transition() -> None:
    p = policy(
        {"Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]},
        {"Expiration": {"Days": 5}},
    )
    group = [ver("k", "v", "2020-01-01T00:00:00", latest=True)]
    assert actions(p, group, "2020-01-03T00:00:00") == ["transition"]
    assert actions(p, group, "2020-01-07T00:00:00") == ["expire"]


def test_earliest_expiration_names_the_rule_and_latest_transition_wins() -> None:
    p = policy(
        {"ID": "late", "Expiration": {"Days": 9}},
        {"ID": "early", "Expiration": {"Days": 2}},
        {"ID": "ia", "Transitions": [{"Days": 1, "StorageClass": "STANDARD_IA"}]},
        {"ID": "gl", "Transitions": [{"Days": 3, "StorageClass": "GLACIER"}]},
    )
    v = ver("k", "v", "2020-01-01T00:00:00", latest=True)
    (d,) = lc.evaluate_key(p, [v], as_of=at("2020-02-01T00:00:00"), stable_before=FAR)
    assert (d.action, d.rule_id) == ("expire", "early")
    q = policy(
        {"ID": "ia", "Transitions": [{"Days": 1, "StorageClass": "STANDARD_IA"}]},
        {"ID": "gl", "Transitions": [{"Days": 3, "StorageClass": "GLACIER"}]},
    )
    (t,) = lc.evaluate_key(q, [v], as_of=at("2020-01-03T00:00:00"), stable_before=FAR)
    assert (t.action, t.storage_class) == ("transition", "STANDARD_IA")
    (t,) = lc.evaluate_key(q, [v], as_of=at("2020-02-01T00:00:00"), stable_before=FAR)
    assert (t.action, t.storage_class) == ("transition", "GLACIER")
    already = ObjectVersion("k", "v", True, False, 10, None, v.last_modified, "GLACIER")
    (t,) = lc.evaluate_key(q, [already], as_of=at("2020-02-01T00:00:00"), stable_before=FAR)
    assert t.action == "keep"


# --- delete markers ---------------------------------------------------------------------


def test_expired_object_delete_marker_only_when_alone() -> None:
    p = policy({"Expiration": {"ExpiredObjectDeleteMarker": True}})
    lone = [ver("k", "m", "2020-01-01T00:00:00", latest=True, marker=True)]
    assert actions(p, lone, "2020-01-01T00:00:00") == ["deleteMarker"]
    shadowing = [*lone, ver("k", "v", "2019-01-01T00:00:00")]
    assert actions(p, shadowing, "2021-01-01T00:00:00") == ["keep", "keep"]


def test_expiration_days_removes_lone_markers_once_old_enough() -> None:
    p = policy({"Expiration": {"Days": 3}})
    lone = [ver("k", "m", "2020-01-01T10:00:00", latest=True, marker=True)]
    assert actions(p, lone, "2020-01-04T23:00:00") == ["keep"]
    assert actions(p, lone, "2020-01-05T00:00:00") == ["deleteMarker"]


# --- filters ----------------------------------------------------------------------------


def test_filters_prefix_size_tags_and_disabled() -> None:
    p = lp.parse_policy(
        {
            "Rules": [
                {"ID": "off", "Status": "Disabled", "Filter": {}, "Expiration": {"Days": 1}},
                {
                    "ID": "and",
                    "Status": "Enabled",
                    "Filter": {
                        "And": {
                            "Prefix": "logs/",
                            "Tags": [{"Key": "t", "Value": "1"}],
                            "ObjectSizeGreaterThan": 100,
                            "ObjectSizeLessThan": 1000,
                        }
                    },
                    "Expiration": {"Days": 1},
                },
            ]
        }
    )
    as_of = "2021-01-01T00:00:00"

    def one(key: str, size: int, tags: dict[str, str] | None) -> str:
        v = ver(key, "v", "2020-01-01T00:00:00", latest=True, size=size)
        got = lc.evaluate_key(
            p, [v], as_of=at(as_of), stable_before=FAR, tags={(key, "v"): tags} if tags else None
        )
        return got[0].action

    assert one("logs/a", 500, {"t": "1"}) == "expire"
    assert one("logs/a", 500, {"t": "2"}) == "keep"
    assert one("logs/a", 500, None) == "keep"
    assert one("other", 500, {"t": "1"}) == "keep"
    assert one("logs/a", 100, {"t": "1"}) == "keep"  # strictly greater than
    assert one("logs/a", 1000, {"t": "1"}) == "keep"  # strictly less than


def test_needs_tags_only_where_a_tag_rule_could_apply() -> None:
    p = policy(
        {
            "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "x", "Value": "y"}]}},
            "Expiration": {"Days": 1},
        }
    )
    group = [
        ver("a/k", "v2", "2020-01-02T00:00:00", latest=True),
        ver("a/k", "v1", "2020-01-01T00:00:00"),  # noncurrent: the rule has no noncurrent action
    ]
    assert [v.version_id for v in lc.needs_tags(p, group)] == ["v2"]
    assert lc.needs_tags(p, [ver("b/k", "v", "2020-01-01T00:00:00", latest=True)]) == []
    assert not lc.tag_filtered(policy({"Expiration": {"Days": 1}}))


def test_uploads_abort_after_days_with_prefix() -> None:
    p = policy(
        {"Filter": {"Prefix": "u/"}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    )
    up = MultipartUpload("u/x", "id1", at("2020-01-01T08:00:00"))
    assert lc.evaluate_upload(p, up, at("2020-01-08T23:00:00")).action == "keep"
    assert lc.evaluate_upload(p, up, at("2020-01-09T00:00:00")).action == "abortUpload"
    other = MultipartUpload("v/x", "id2", at("2020-01-01T08:00:00"))
    assert lc.evaluate_upload(p, other, at("2021-01-01T00:00:00")).action == "keep"


# --- protection -------------------------------------------------------------------------


def _info(**meta: Any) -> ObjectInfo:
    status = meta.pop("replication_status", None)
    return ObjectInfo(
        "k", "v", 1, None, at("2020-01-01T00:00:00"), ObjectMeta(**meta), replication_status=status
    )


def test_protection_is_judged_now() -> None:
    now = at("2020-06-01T00:00:00")
    future = _info(object_lock_mode="GOVERNANCE", object_lock_retain_until=now + timedelta(days=1))
    past = _info(object_lock_mode="COMPLIANCE", object_lock_retain_until=now - timedelta(days=1))
    assert "GOVERNANCE" in (lc.protection(future, now) or "")
    assert lc.protection(past, now) is None
    assert "legal hold" in (lc.protection(_info(legal_hold=True), now) or "")
    assert "pending" in (lc.protection(_info(replication_status="PENDING"), now) or "")
    assert lc.protection(_info(replication_status="COMPLETED"), now) is None


# --- validation -------------------------------------------------------------------------


def _rule(**fields: Any) -> dict[str, Any]:
    return {"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {}, **fields}]}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "Rules must be a non-empty list"),
        ({"Rules": []}, "Rules must be a non-empty list"),
        ({"Rulez": []}, "unknown field"),
        (_rule(), "at least one action"),
        (_rule(Status="On", Expiration={"Days": 1}), "Status must be Enabled or Disabled"),
        (_rule(Expiration={"Days": 0}), "Expiration Days must be between 1"),
        (_rule(Expiration={"Days": "3"}), "Expiration Days must be an integer"),
        (_rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True}), "exactly one of"),
        (_rule(Expiration={"Date": "2020-01-01T10:00:00Z"}), "must be at midnight UTC"),
        (_rule(Expiration={"Date": "soon"}), "not an ISO-8601 date"),
        (_rule(NoncurrentVersionExpiration={"NewerNoncurrentVersions": 1}), "needs NoncurrentDays"),
        (
            _rule(
                NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 101}
            ),
            "NewerNoncurrentVersions must be between 0 and 100",
        ),
        (_rule(AbortIncompleteMultipartUpload={}), "needs DaysAfterInitiation"),
        (
            _rule(
                Filter={"Tag": {"Key": "a", "Value": "b"}},
                AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1},
            ),
            "cannot be used with a tag filter",
        ),
        (
            _rule(
                Filter={"Tag": {"Key": "a", "Value": "b"}},
                Expiration={"ExpiredObjectDeleteMarker": True},
            ),
            "cannot be used with a tag filter",
        ),
        (_rule(Filter={"Prefix": "a", "Tag": {"Key": "a"}}, Expiration={"Days": 1}), "use And"),
        (
            _rule(
                Filter={"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 5}},
                Expiration={"Days": 1},
            ),
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
        ),
        (_rule(Filter={"Size": 1}, Expiration={"Days": 1}), "unknown field"),
        (_rule(Transitions=[{"Days": 1, "StorageClass": "STANDARD"}]), "other than STANDARD"),
        (_rule(Transitions=[{"StorageClass": "GLACIER"}]), "exactly one of Days and Date"),
        (
            {
                "Rules": [{"ID": "a", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]
                * 2
            },
            "IDs must be unique",
        ),
        (
            {
                "Rules": [
                    {"Status": "Enabled", "Prefix": "", "Filter": {}, "Expiration": {"Days": 1}}
                ]
            },
            "either Filter or the legacy Prefix",
        ),
    ],
)
def test_invalid_policies_are_rejected_precisely(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        lp.parse_policy(config)


def test_validate_policy_json() -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        lp.validate_policy_json("{nope")
    good = lp.validate_policy_json(json.dumps(_rule(Expiration={"Days": 30})))
    assert good.rules[0].expiration_days == 30
    legacy = lp.parse_policy(
        {"Rules": [{"Status": "Enabled", "Prefix": "p/", "Expiration": {"Days": 1}}]}
    )
    assert legacy.rules[0].filter.prefix == "p/"


def test_boto3_shaped_dates_round_trip() -> None:
    config = _rule(Expiration={"Date": datetime(2030, 1, 1, tzinfo=UTC)})
    parsed = lp.validate_policy_json(lp.config_to_json(config))
    assert parsed.rules[0].expiration_date == at("2030-01-01T00:00:00")


def test_as_of() -> None:
    default = at("2020-01-01T00:00:00")
    assert lp.parse_as_of(None, default) == default
    assert lp.parse_as_of("2030-01-02T03:04:05Z", default) == at("2030-01-02T03:04:05")
    with pytest.raises(InvalidRequest, match="asOf"):
        lp.parse_as_of("tomorrow", default)
