"""``Policy.screen``, the fast path of current-version evaluation, decides exactly as the
full evaluation (``lifecycle._current``) on every kind of rule, filter and moment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from objectjobs import lifecycle as lc
from objectjobs import lifecycle_policy as lp
from objectjobs.storage.interface import ObjectVersion

AS_OF = datetime(2024, 3, 10, 15, 30, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def _random_rule(rng: random.Random, i: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"ID": f"r{i}", "Status": rng.choice(["Enabled"] * 4 + ["Disabled"])}
    predicates: dict[str, Any] = {}
    if rng.random() < 0.4:
        predicates["Prefix"] = rng.choice(["a/", "b/", "a/x"])
    if rng.random() < 0.2:
        predicates["ObjectSizeGreaterThan"] = rng.choice([0, 5])
    if rng.random() < 0.2:
        predicates["ObjectSizeLessThan"] = rng.choice([10, 100])
    if rng.random() < 0.2:
        predicates["Tags"] = [{"Key": "t", "Value": rng.choice(["1", "2"])}]
    if predicates.get("ObjectSizeGreaterThan", -1) >= predicates.get("ObjectSizeLessThan", 1e9):
        del predicates["ObjectSizeGreaterThan"]
    rule["Filter"] = (
        {"And": predicates} if len(predicates) > 1 or "Tags" in predicates else (predicates)
    )
    kind = rng.random()
    if kind < 0.6:
        rule["Expiration"] = {"Days": rng.choice([1, 2, 3, 30])}
    elif kind < 0.8:
        day = rng.choice(["2024-03-09", "2024-03-10", "2024-03-11"])
        rule["Expiration"] = {"Date": f"{day}T00:00:00Z"}
    if rng.random() < 0.3 or "Expiration" not in rule:
        step = (
            {"Days": rng.choice([0, 1, 2])}
            if rng.random() < 0.7
            else {"Date": rng.choice(["2024-03-10T00:00:00Z", "2024-03-12T00:00:00Z"])}
        )
        rule["Transitions"] = [{**step, "StorageClass": rng.choice(["GLACIER", "COLD"])}]
    return rule


def _moments() -> list[datetime]:
    """Modification times around every threshold the rules above make, in several zones."""
    out = []
    for days in range(0, 6):
        edge = datetime(2024, 3, 10 - days, tzinfo=UTC)
        for delta in (
            timedelta(0),
            timedelta(microseconds=-1),
            timedelta(microseconds=1),
            timedelta(hours=-12),
            timedelta(hours=12),
        ):
            moment = edge + delta
            out += [moment, moment.astimezone(TOKYO)]
    return out


def test_the_screen_decides_as_the_full_evaluation() -> None:
    rng = random.Random(20261129)
    moments = _moments()
    compared = screened = 0
    for _ in range(300):
        policy = lp.parse_policy(
            {"Rules": [_random_rule(rng, i) for i in range(rng.randint(1, 3))]}
        )
        for as_of in (AS_OF, AS_OF.astimezone(TOKYO), datetime(2024, 3, 10, tzinfo=UTC)):
            screen = lc.current_screen(policy, as_of)
            assert screen is not None
            for _ in range(20):
                v = ObjectVersion(
                    rng.choice(["a/x1", "a/y", "b/z", "c"]),
                    rng.choice([None, "v1"]),
                    True,
                    False,
                    rng.choice([0, 5, 7, 50, 500]),
                    None,
                    rng.choice(moments),
                    rng.choice(["STANDARD", "GLACIER"]),
                )
                tags = rng.choice([None, {}, {"t": "1"}, {"t": "2"}])
                expected = lc._current(policy, v, tags, as_of)
                assert screen.decide(v, tags) == expected, (policy, v, tags, as_of)
                [got] = lc.evaluate_key(
                    policy,
                    [v],
                    as_of=as_of,
                    stable_before=as_of,
                    tags={(v.key, v.version_id): tags} if tags else None,
                )
                assert got == expected
                compared += 1
                screened += expected.action in (lc.EXPIRE, lc.KEEP)
    assert compared == 18_000 and screened > 9_000  # the fast path was exercised


def test_naive_times_and_days_beyond_the_calendar_take_the_full_evaluation() -> None:
    policy = lp.parse_policy(
        {
            "Rules": [
                {"ID": "far", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 2_000_000}}
            ]
        }
    )
    assert lc.current_screen(policy, AS_OF) is None  # as_of - 2e6 days is before year 1
    near = lp.parse_policy(
        {"Rules": [{"ID": "near", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}
    )
    naive = ObjectVersion("k", None, True, False, 1, None, datetime(2024, 1, 1))
    screen = lc.current_screen(near, AS_OF)
    assert screen is not None
    assert screen.decide(naive, None) == lc._current(near, naive, None, AS_OF)


def test_a_policy_screens_each_moment_once() -> None:
    policy = lp.parse_policy(
        {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}
    )
    screen = lc.current_screen(policy, AS_OF)
    assert screen is lc.current_screen(policy, AS_OF)
    assert screen is not lc.current_screen(policy, AS_OF + timedelta(days=1))
