"""The pure side of notifications: configuration parsing, matching, records, ledger keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest

from objectjobs import events
from objectjobs.errors import InvalidRequest

CONFIG = {
    "TopicConfigurations": [
        {
            "Id": "images",
            "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {
                    "FilterRules": [
                        {"Name": "Prefix", "Value": "img/"},
                        {"Name": "suffix", "Value": ".jpg"},
                    ]
                }
            },
        },
        {"Id": "gone", "TopicArn": "arn:t2", "Events": ["s3:ObjectRemoved:*"]},
    ],
    "QueueConfigurations": [
        {"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:Copy"]}
    ],
    "LambdaFunctionConfigurations": [
        {
            "Id": "mp",
            "LambdaFunctionArn": "arn:aws:lambda:x",
            "Events": ["s3:ObjectCreated:CompleteMultipartUpload"],
        }
    ],
}


def _rule(rule_id: str) -> events.NotificationRule:
    return next(r for r in events.parse_rules(CONFIG) if r.id == rule_id)


def test_parses_every_kind_and_keeps_only_creation_rules() -> None:
    rules = events.parse_rules(CONFIG)
    assert sorted((r.id, r.kind, r.arn) for r in rules) == [
        ("arn:aws:sqs:us-east-1:1:q", "queue", "arn:aws:sqs:us-east-1:1:q"),  # no Id: the ARN
        ("gone", "topic", "arn:t2"),
        ("images", "topic", "arn:aws:sns:us-east-1:1:t"),
        ("mp", "lambda", "arn:aws:lambda:x"),
    ]
    created = events.creation_rules(rules)
    assert sorted(r.id for r in created) == ["arn:aws:sqs:us-east-1:1:q", "images", "mp"]
    images = _rule("images")
    assert (images.prefix, images.suffix) == ("img/", ".jpg")
    assert images.accepts("ObjectCreated:Post") and not images.accepts("ObjectRemoved:Delete")


def test_key_filters_match_raw_keys() -> None:
    images = _rule("images")
    assert images.matches_key("img/a b+c.jpg")
    assert not images.matches_key("img/a.png")
    assert not images.matches_key("x/img/a.jpg")
    regex = events.parse_rules(
        {
            "TopicConfigurations": [
                {
                    "TopicArn": "a",
                    "Events": ["s3:ObjectCreated:Put"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "regex", "Value": r"d/\d+"}]}},
                }
            ]
        }
    )[0]
    assert regex.matches_key("d/42") and not regex.matches_key("d/42x")


@pytest.mark.parametrize(
    "config",
    [
        {"TopicConfigurations": [{"Events": ["s3:ObjectCreated:*"]}]},
        {"TopicConfigurations": [{"TopicArn": "a", "Events": "s3:ObjectCreated:*"}]},
        {
            "TopicConfigurations": [
                {
                    "TopicArn": "a",
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "middle", "Value": "x"}]}},
                }
            ]
        },
        {
            "QueueConfigurations": [
                {
                    "QueueArn": "a",
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"S3Tags": {"FilterRules": [{"Name": "t", "Value": "v"}]}},
                }
            ]
        },
    ],
)
def test_malformed_or_unsupported_configurations_are_refused(config: dict) -> None:
    with pytest.raises(InvalidRequest):
        events.parse_rules(config)


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a b.jpg", "a+b.jpg"),
        ("dir/x+y", "dir/x%2By"),
        ("Grüße/ß ü.txt", "Gr%C3%BC%C3%9Fe/%C3%9F+%C3%BC.txt"),
        ("q?=&%", "q%3F%3D%26%25"),
    ],
)
def test_keys_are_encoded_as_s3_does(key: str, encoded: str) -> None:
    assert events.encode_key(key) == encoded
    assert unquote_plus(encoded) == key


def test_record_is_a_standard_s3_record_marked_as_reconciliation() -> None:
    modified = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    obj = events.EventObject("img/a b.jpg", 12, '"abc"', "v1", modified)
    sent = datetime(2026, 5, 1, tzinfo=UTC)
    record = events.build_record(
        _rule("images"), bucket="bk", obj=obj, region="eu-1", job_id=-7, sent_at=sent
    )
    assert record["eventVersion"] == "2.1" and record["eventSource"] == "aws:s3"
    assert record["awsRegion"] == "eu-1"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["eventTime"] == "2026-03-04T05:06:07.891Z"
    assert record["requestParameters"]["sourceIPAddress"] == "objectjobs"
    assert record["objectjobs"] == {
        "reconciliation": True,
        "jobId": -7,
        "sentAt": "2026-05-01T00:00:00.000Z",
    }
    s3 = record["s3"]
    assert s3["s3SchemaVersion"] == "1.0" and s3["configurationId"] == "images"
    assert s3["bucket"]["name"] == "bk" and s3["bucket"]["arn"] == "arn:aws:s3:::bk"
    assert s3["object"]["key"] == "img/a+b.jpg"
    assert (s3["object"]["size"], s3["object"]["eTag"], s3["object"]["versionId"]) == (
        12,
        "abc",
        "v1",
    )
    body = json.loads(events.event_body(record))
    assert body == {"Records": [record]}
    # the rule that only takes Copy reports Copy; the multipart-only rule its own event
    copy_rule, mp_rule = _rule("arn:aws:sqs:us-east-1:1:q"), _rule("mp")
    assert copy_rule.event_name('"x"') == "ObjectCreated:Copy"
    assert mp_rule.event_name('"x-3"') == "ObjectCreated:CompleteMultipartUpload"


@pytest.mark.parametrize("rule_id", ["images", "mp", "arn:aws:sqs:us-east-1:1:q", "\0object"])
@pytest.mark.parametrize(
    "obj",
    [
        events.EventObject("img/a b.jpg", 12, '"abc"', "v1", datetime(2026, 3, 4, tzinfo=UTC)),
        events.EventObject('k/"ü"\\€ 😀', 0, '"d-3"', "null", datetime(1999, 12, 31, 23, 59)),
        events.EventObject("x", 2**40, None, None, datetime(2026, 1, 1, 1, 1, 1, 999999)),
    ],
)
def test_event_bodies_are_the_records_bodies_byte_for_byte(
    rule_id: str, obj: events.EventObject
) -> None:
    if rule_id.startswith("\0"):  # an id spelling a frame mark: the maker must not be fooled
        rule = events.NotificationRule(rule_id, "arn:x", "topic", ("s3:ObjectCreated:*",))
    else:
        rule = _rule(rule_id)
    sent = datetime(2026, 5, 1, 2, 3, 4, 5000, tzinfo=UTC)
    maker = events.EventBodies(rule, bucket="bk-1", region="eu-1", job_id=42)
    record = events.build_record(
        rule, bucket="bk-1", obj=obj, region="eu-1", job_id=42, sent_at=sent
    )
    assert maker.body(obj, sent) == events.event_body(record)


def test_sequencer_grows_with_last_modified_and_has_fixed_width() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    seqs = [events.sequencer(t0 + timedelta(microseconds=n)) for n in (0, 1, 1000, 10**9)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert {len(s) for s in seqs} == {18}
    int(seqs[0], 16)


def test_ledger_keys_are_unambiguous_and_nul_free() -> None:
    rule = _rule("images")
    a = events.ledger_key(rule, 'k","x', "e")
    b = events.ledger_key(rule, "k", '","x","e')  # would collide with naive joining
    assert a != b and "\x00" not in a
    assert json.loads(a) == ["images", 'k","x', "e"]
