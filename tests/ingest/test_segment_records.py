"""The Segment fast path (msgspec, raw bytes kept) builds the records the general path builds, or steps aside."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.analytics import AnalyticsBatch
from services.ingest.segment import map_messages, parse_messages
from services.ingest.segmentbatch import MAX_BRACKETS, SegmentBatch, map_batch

RECEIVED = datetime(2026, 11, 25, 12, 0, 5, 250000, tzinfo=UTC)
RECEIVED_ISO = "2026-11-25T12:00:05.250Z"
MESSAGES: list[dict[str, Any]] = [
    {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-9",
        "properties": {"revenue": 12.5, "items": [{"sku": "a", "n": 2}], "note": 'caf\u00e9 "x" [ }'},
        "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
        "integrations": {},
        "timestamp": "2026-11-25T12:00:00.123456+00:00",
        "messageId": "8c3f6a1e-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
    },
    {"type": "page", "name": "Home", "anonymousId": "a-1", "properties": [], "timestamp": "2026-11-25T13:00:00+01:00"},
    {"type": "screen", "name": "Main", "userId": "u" * 300, "originalTimestamp": "2026-11-25T11:59:59Z"},
    {"type": "identify", "userId": "u-1", "traits": {"email": "a@b.c"}, "messageId": "has space in it"},
    {"type": "group", "userId": "u-1", "groupId": "g-7", "traits": {"name": "Acme", "group_id": "old"}},
    {"type": "alias", "userId": "u-2", "previousId": "anon-3", "timestamp": "not a time", "messageId": ""},
    {"type": "track", "event": "", "timestamp": "2026-02-30T00:00:00Z"},
]


def _general(body: bytes) -> AnalyticsBatch:
    return map_messages(parse_messages(body, single=None), received=RECEIVED, check_sizes=True)


def _lines(batch: AnalyticsBatch | SegmentBatch) -> list[dict[str, Any]]:
    batch.prepare("h")
    data, _, _ = batch.encode(batch.records)
    return [orjson.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize("dumps", [json.dumps, lambda value: orjson.dumps(value).decode()], ids=["sdk", "compact"])
def test_fast_path_records_equal_the_general_paths(dumps: Any) -> None:
    body = dumps({"batch": MESSAGES, "sentAt": "2026-11-25T12:00:05+00:00", "writeKey": "k"}).encode()
    fast = map_batch(body, received_iso=RECEIVED_ISO)
    assert fast is not None
    general = _general(body)
    fast_lines, general_lines = _lines(fast), _lines(general)
    server_ids = [i for i, m in enumerate(MESSAGES) if not m.get("messageId")]
    for index, (got, expected) in enumerate(zip(fast_lines, general_lines, strict=True)):
        assert list(got) == list(expected)  # same keys in the same order
        if index in server_ids:  # a fresh server id on each path
            assert len(got.pop("event_id")) == 32 and len(expected.pop("event_id")) == 32
        assert got == expected
    assert fast_lines[0]["event_time"] == "2026-11-25T12:00:00.123Z"
    assert fast_lines[1]["event_time"] == "2026-11-25T12:00:00.000Z"
    assert fast_lines[4]["properties"] == {"name": "Acme", "group_id": "g-7"}
    assert fast_lines[6]["event_time"] == RECEIVED_ISO


def test_fast_path_keeps_each_message_as_the_sdk_sent_it() -> None:
    body = json.dumps({"batch": MESSAGES[:1]}).encode()
    fast = map_batch(body, received_iso=RECEIVED_ISO)
    assert fast is not None
    fast.prepare(None)
    data, days, counts = fast.encode(fast.records)
    assert json.dumps(MESSAGES[0]).encode() in data
    assert days == {("track", "2026-11-25")} and counts == {("track", None): 1}


NOT_FAST = [
    {"type": "unknown"},
    {"type": "page", "timestamp": 1764072000},
    {"type": "track"},  # no event name: a bad row
    {"type": "track", "event": 5},
    {"type": "track", "event": "e", "userId": 42},
    {"type": "track", "event": "e", "messageId": 7},
    {"type": "track", "event": "e", "properties": {"blob": "x" * 33_000}},
    {
        "type": "track",
        "event": "e",
        "properties": {"deep": json.loads("[" * (MAX_BRACKETS + 1) + "]" * (MAX_BRACKETS + 1))},
    },
    "not an object",
]


@pytest.mark.parametrize("message", NOT_FAST)
def test_a_message_off_the_fast_path_sends_the_batch_down_the_general_path(message: Any) -> None:
    body = json.dumps({"batch": [MESSAGES[0], message]}).encode()
    assert map_batch(body, received_iso=RECEIVED_ISO) is None


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"batch": []}',
        b'{"batch": 3}',
        b"not json",
        b'{"batch": [{"type": "track", "event": "e"}]}\n'.replace(b"}]}", b"}\n]}"),
        b'{"batch": [{"type": "track", "event": "\xff"}]}',
    ],
)
def test_bodies_the_fast_path_does_not_take(body: bytes) -> None:
    assert map_batch(body, received_iso=RECEIVED_ISO) is None


SDK_STAMP = "2026-11-25T12:00:00.123456+00:00"


@pytest.mark.parametrize(
    "stamps",
    [
        [SDK_STAMP, "2026-11-25T23:59:59.999999+00:00", "2026-11-26T00:00:00.000001+00:00"],
        [SDK_STAMP, "2026-02-30T12:00:00.123456+00:00"],  # no such day: the original timestamp then
        [SDK_STAMP, f"{SDK_STAMP}\n{SDK_STAMP}"],  # a newline inside one must not pass as two
        [SDK_STAMP, None],
        [SDK_STAMP, "2026-11-25T12:00:00+00:00"],  # Python's isoformat() at microsecond 0
        [SDK_STAMP, "2026-11-25T12:00:00.123456+01:00"],
        ["2026-11-25T24:00:00.123456+00:00"],
        ["\u0662026-11-25T12:00:00.123456+00:00"],  # a non-ASCII digit, as the general path's pattern takes it
    ],
)
def test_timestamps_read_batch_wide_equal_the_general_paths(stamps: list[str | None]) -> None:
    messages = [
        {"type": "track", "event": "e", "messageId": f"m{i}", "originalTimestamp": "2026-11-24T01:02:03Z"}
        | ({"timestamp": stamp} if stamp is not None else {})
        for i, stamp in enumerate(stamps)
    ]
    body = json.dumps({"batch": messages}).encode()
    fast = map_batch(body, received_iso=RECEIVED_ISO)
    assert fast is not None
    got = [line["event_time"] for line in _lines(fast)]
    assert got == [line["event_time"] for line in _lines(_general(body))]
    assert got[0] == "2026-11-25T12:00:00.123Z" or stamps[0] != SDK_STAMP
