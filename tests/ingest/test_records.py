"""Record building: the plain-event shortcut gives exactly the record the full model gives; line encoding."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from services.ingest.models import AdEventIn, BeaconIn, MeterReadIn
from services.ingest.plainbatch import PlainRecord, decode_plain_batch, encode_records, plain_records
from services.ingest.records import (
    beacon_record,
    encode_lines,
    event_record,
    iso_z,
    plain_ad_records,
    server_event_id,
)
from shared.contracts import METER_FIELDS, RAW_BASE_FIELDS, RawRecord


def test_plain_shortcut_matches_the_full_model() -> None:
    now = datetime(2026, 11, 25, 12, 0, 1, 123000, tzinfo=UTC)
    item = {"type": "click", "event_id": "c-1", "ad_id": "ad-1", "campaign_id": "c", "placement": "p", "user_id": "u"}
    [fast] = plain_ad_records([item], received_iso=iso_z(now), ip_hash="h")
    full = event_record(AdEventIn.model_validate(item), received_iso=iso_z(now), ip_hash="h")
    assert fast == full
    assert fast is not None and fast["event_time"] == "2026-11-25T12:00:01.123Z"


# Events that only the full model may judge (valid or not), on both plain paths.
NOT_PLAIN = [
    {"type": "impression", "ad_id": ""},
    {"type": "impression", "ad_id": "a", "timestamp": "2026-11-25T00:00:00Z"},
    {"type": "impression", "ad_id": "a", "campaign": "c"},
    {"type": "impression", "ad_id": "a", "event_id": "has space"},
    {"type": "impression", "ad_id": "a", "event_id": "trailing-newline\n"},
    {"type": "impression", "ad_id": "a" * 129},
    {"type": "impression", "ad_id": 5},
    {"type": "meter_read", "cloud_id": "1", "demand_kw": 1.0},
]


@pytest.mark.parametrize("item", NOT_PLAIN)
def test_anything_but_a_plain_ad_event_takes_the_full_model(item: dict) -> None:
    plain = {"type": "click", "ad_id": "ad-2"}
    records = plain_ad_records([plain, item, plain], received_iso="2026-11-25T00:00:00.000Z", ip_hash=None)
    assert records[1] is None
    assert records[0] is not None and records[2] is not None and records[0]["event_id"] != records[2]["event_id"]


def test_server_ids_are_unique_32_hex_characters() -> None:
    ids = {server_event_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def _record(event_id: str, properties: dict) -> dict:
    return {"event_id": event_id, "type": "custom", "properties": properties}


@pytest.mark.parametrize(
    "records",
    [
        [_record("a", {}), _record("b", {"x": '},{"event_id":'}), _record("c", {})],
        # Nested objects that hold the separator bytes themselves: each record is then encoded alone.
        [_record("a", {"list": [{"k": 1}, {"event_id": "nested"}]}), _record("b", {})],
        # A record whose first key is not event_id cannot be found by the separator.
        [{"type": "x", "event_id": "a", "p": [{"q": 1}, {"event_id": "z"}]}, _record("b", {})],
        [_record("only", {"n": None})],
    ],
)
def test_encoded_lines_are_one_record_each(records: list[dict]) -> None:
    data = encode_lines(records)
    assert data.endswith(b"\n")
    assert [orjson.loads(line) for line in data.splitlines()] == records


PLAIN_BATCH = [
    {"type": "impression", "ad_id": "ad-1"},
    {"type": "click", "ad_id": "ad-2", "campaign_id": "c", "placement": "p", "user_id": "u" * 256, "event_id": "e.1"},
    {"type": "click", "ad_id": "ad-3", "campaign_id": None, "placement": 'p\u00e9\n"q"'},
]


@pytest.mark.parametrize("wrapped", [True, False])
def test_msgspec_path_builds_the_records_the_general_path_builds(wrapped: bool) -> None:
    body = orjson.dumps({"events": PLAIN_BATCH} if wrapped else PLAIN_BATCH)
    events = decode_plain_batch(body)
    assert events is not None
    ids = [f"{n:032x}" for n in range(len(events))]
    lines = encode_records(plain_records(events, ids, received_iso="t", ip_hash="h"))
    fast = [orjson.loads(line) for line in lines.splitlines()]
    full = [event_record(AdEventIn.model_validate(item), received_iso="t", ip_hash="h") for item in PLAIN_BATCH]
    for record, expected, item, server_id in zip(fast, full, PLAIN_BATCH, ids, strict=True):
        assert record == {**expected, "event_id": item.get("event_id", server_id)}
    assert list(fast[0]) == list(full[0])  # same keys in the same order


@pytest.mark.parametrize("item", [*NOT_PLAIN, {"type": "impression", "ad_id": "a", "user_id": "u" * 257}])
def test_one_event_that_is_not_plain_sends_the_batch_down_the_general_path(item: dict) -> None:
    assert decode_plain_batch(orjson.dumps({"events": [PLAIN_BATCH[0], item]})) is None


@pytest.mark.parametrize("body", [b"{}", b'{"events": 3}', b"not json", b'{"type": "click", "ad_id": "a"}'])
def test_bodies_that_are_not_plain_batches_are_left_to_the_general_path(body: bytes) -> None:
    assert decode_plain_batch(body) is None


def test_every_record_builder_writes_the_raw_record_contract_in_its_field_order() -> None:
    # shared.contracts defines the raw record; a change there must show up here, not in the archive.
    ad = event_record(AdEventIn.model_validate({"type": "click", "ad_id": "a"}), received_iso="t", ip_hash=None)
    beacon = beacon_record("impression", BeaconIn(ad_id="a"), received_iso="t", ip_hash=None)
    [plain] = plain_ad_records([{"type": "click", "ad_id": "a"}], received_iso="t", ip_hash=None)
    meter = event_record(MeterReadIn(cloud_id="00a1", demand_kw=1.5), received_iso="t", ip_hash=None)
    for record in (ad, beacon, plain):
        assert record is not None and tuple(record) == RAW_BASE_FIELDS
        RawRecord.model_validate(record)
    assert PlainRecord.__struct_fields__ == RAW_BASE_FIELDS
    assert tuple(meter) == (*RAW_BASE_FIELDS, *METER_FIELDS)
    assert RawRecord.model_validate(meter).cloud_id == "00a1"
