"""The local engine's mapping: exact rows, bad rows with reasons, and one meaning for both mapping paths."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from services.transform.builtin_schemas import AD_EVENTS_V1, METER_READS_V1
from services.transform.engine.blocks import iter_blocks
from services.transform.engine.local import EngineOptions, transform_sources
from services.transform.engine.mapping import BlockMapper
from services.transform.engine.views import AdvertisingView
from shared.schemas import parse_schema_yaml
from tests.transform.sample import BAD_LINES, good_beacons, jsonl

NESTED = parse_schema_yaml(
    """name: orders
version: 2
columns:
  - {name: order_id, source: id, type: bigint, nullable: false}
  - {name: city, source: customer.address.city, type: varchar(16), transform: upper}
  - {name: first_sku, source: "items[0].sku", type: varchar(8)}
  - {name: second_qty, source: "items[1].qty", type: smallint}
  - {name: paid, source: payment.ok, type: boolean, default: false}
  - {name: amount, source: payment.amount, type: real}
  - {name: total, source: total, type: double precision}
  - {name: ordered_at, source: ts, type: timestamp, transform: epoch_millis_to_timestamp, nullable: false}
  - {name: shipped_at, source: shipped, type: timestamp}
  - {name: dt, source: ts, type: date, transform: epoch_millis_to_timestamp, nullable: false}
partition_column: dt
"""
)
TS = 1_795_852_800_000  # 2026-11-28T08:00:00Z in milliseconds

TRICKY = [
    {
        "id": 1,
        "customer": {"address": {"city": "Paris"}},
        "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 3}],
        "payment": {"ok": True, "amount": 12.5},
        "total": 12,
        "ts": TS,
        "shipped": "2026-11-28T09:30:00+01:00",
    },
    {"id": 2, "customer": None, "items": [], "total": 1.25, "ts": TS + 1, "shipped": "2026-11-28 10:00:00"},
    {"id": 3, "customer": {"address": "unknown"}, "items": [{"sku": 7}], "ts": TS + 1.5, "shipped": None},
    {"id": 4, "items": [{"sku": "C"}, {"qty": 70000}], "ts": TS},
    {"id": 5.5, "ts": TS},
    {"id": 6, "ts": "2026-11-28"},
    {"id": 7, "ts": TS, "shipped": "2026-02-30T00:00:00Z"},
    {"id": 8, "ts": TS, "payment": {"ok": "yes"}},
    {"id": 99999999999999999999, "ts": TS},
    {"id": 9, "ts": TS, "customer": {"address": {"city": "Saint-Rémy-de-Provence"}}},
    {"id": 10, "ts": TS, "payment": {"amount": 1e39}},
    {"id": 11, "ts": TS + 86_400_000},
    {"id": 12, "ts": TS, "shipped": "2026-11-28T10:00:00.1234567Z"},
    [1, 2],
    {"ts": TS},
]


def _block(records: list[object], extra: list[bytes] | None = None) -> bytes:
    return b"\n".join([json.dumps(r).encode() for r in records] + (extra or [])) + b"\n"


def test_nested_paths_array_indexes_transforms_and_defaults_map_exactly() -> None:
    mapper = BlockMapper(NESTED, dt=date(2026, 11, 28))

    mapped = mapper.map_block(_block(TRICKY[:4]))

    assert mapped.table.to_pylist() == [
        {
            "order_id": 1,
            "city": "PARIS",
            "first_sku": "A1",
            "second_qty": 3,
            "paid": True,
            "amount": 12.5,
            "total": 12.0,
            "ordered_at": datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
            "shipped_at": datetime(2026, 11, 28, 8, 30, tzinfo=UTC),
            "dt": date(2026, 11, 28),
        },
        {
            "order_id": 2,
            "city": None,
            "first_sku": None,
            "second_qty": None,
            "paid": False,
            "amount": None,
            "total": 1.25,
            "ordered_at": datetime(2026, 11, 28, 8, 0, 0, 1000, tzinfo=UTC),
            "shipped_at": datetime(2026, 11, 28, 10, tzinfo=UTC),
            "dt": date(2026, 11, 28),
        },
        {
            "order_id": 3,
            "city": None,
            "first_sku": "7",
            "second_qty": None,
            "paid": False,
            "amount": None,
            "total": None,
            "ordered_at": datetime(2026, 11, 28, 8, 0, 0, 1500, tzinfo=UTC),
            "shipped_at": None,
            "dt": date(2026, 11, 28),
        },
    ]
    assert [b.reason for b in mapped.bad] == ["overflow: second_qty value 70000 does not fit smallint"]
    assert mapped.bad[0].line == 4
    assert mapped.table.schema.field("second_qty").type == pa.int16()
    assert mapped.table.schema.field("amount").type == pa.float32()


def test_bad_rows_carry_every_reason_and_the_original_record() -> None:
    mapper = BlockMapper(NESTED, dt=date(2026, 11, 28))

    mapped = mapper.map_block(
        _block(TRICKY[4:], [b"", b"{not json", b'{"id": 1, "ts": 1} {"id": 2, "ts": 2}']),
        source="s3://raw/x.json.gz",
        first_line=100,
    )

    reasons = {b.line: b.reason for b in mapped.bad}
    assert mapped.rows_in == 13 and mapped.table.num_rows == 1
    assert reasons == {
        100: "type mismatch: order_id expects bigint, got number with a fraction or exponent",
        101: "type mismatch: ordered_at expects timestamp, got string (expected epoch number); "
        "type mismatch: dt expects date, got string (expected epoch number)",
        102: "type mismatch: shipped_at expects timestamp, got string (not an ISO-8601 timestamp)",
        103: "type mismatch: paid expects boolean, got string",
        104: "overflow: order_id value 100000000000000000000 does not fit bigint",
        105: "overflow: city is 23 bytes, varchar(16) holds 16",
        106: "overflow: amount value 1e+39 does not fit real",
        107: "partition mismatch: dt 2026-11-29 is outside the partition 2026-11-28",
        109: "type mismatch: a record must be a JSON object",
        110: "missing required field: id (column order_id)",
        112: "malformed JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        113: "malformed JSON: unexpected content after document: line 1 column 20 (char 19)",
    }
    assert mapped.bad[0].record == {"id": 5.5, "ts": TS}
    assert mapped.bad[-2].record == "{not json"
    assert mapped.bad[0].source == "s3://raw/x.json.gz"
    assert mapped.bad[1].errors[0] == {
        "column": "ordered_at",
        "kind": "type_mismatch",
        "reason": reasons[101].split("; ")[0],
    }


@pytest.mark.parametrize("schema_text", [AD_EVENTS_V1, METER_READS_V1, NESTED.to_yaml()])
def test_vectorised_and_row_paths_agree_row_for_row(schema_text: str) -> None:
    schema = parse_schema_yaml(schema_text)
    dt = date(2026, 11, 28) if schema.name == "orders" else date(2026, 11, 24)
    meter = [
        {
            "event_id": f"m{i}",
            "cloud_id": "007",
            "event_time": f"2026-11-24T0{i}:00:00Z",
            "demand_kw": i * 0.5,
            "summation_delivered_kwh": i,
            "summation_received_kwh": None,
        }
        for i in range(5)
    ]
    records = [*TRICKY, *good_beacons(), *meter]
    fast, slow = BlockMapper(schema, dt=dt), BlockMapper(schema, dt=dt, vectorised=False)
    for start in range(0, len(records), 3):  # small blocks: some clean, some falling back
        block = _block(records[start : start + 3])
        a, b = fast.map_block(block), slow.map_block(block)
        assert a.table.equals(b.table), (a.table.to_pylist(), b.table.to_pylist())
        assert [x.to_json() for x in a.bad] == [x.to_json() for x in b.bad]
        assert a.rows_in == b.rows_in


def test_two_objects_on_one_line_are_one_malformed_line_on_both_paths() -> None:
    mapper = BlockMapper(parse_schema_yaml(AD_EVENTS_V1), dt=date(2026, 11, 24))
    events = good_beacons()
    block = jsonl(events[:2]) + orjson.dumps(events[2]) + b" " + orjson.dumps(events[3]) + b"\n"

    mapped = mapper.map_block(block)

    assert (mapped.rows_in, mapped.table.num_rows) == (3, 2)
    assert [b.line for b in mapped.bad] == [3] and mapped.bad[0].reason.startswith("malformed JSON")


def test_clean_blocks_take_the_vectorised_path() -> None:
    mapper = BlockMapper(parse_schema_yaml(AD_EVENTS_V1), dt=date(2026, 11, 24))

    mapped = mapper.map_block(jsonl(good_beacons(), [BAD_LINES[2][0], BAD_LINES[3][0]]))

    assert mapped.vectorised
    assert (mapped.table.num_rows, len(mapped.bad)) == (11, 2)
    assert mapped.bad[0].reason == BAD_LINES[2][1]


def test_blocks_cover_concatenated_gzip_members_and_a_last_line_without_newline() -> None:
    lines = [orjson.dumps({"n": i}) for i in range(3000)]
    text = b"\n".join(lines)  # no trailing newline
    stream = io.BytesIO(gzip.compress(text[:20000]) + gzip.compress(text[20000:]))

    blocks = list(iter_blocks(stream, block_bytes=4096))

    assert len(blocks) > 5
    assert b"".join(b.data for b in blocks) == text
    assert all(b.data.endswith(b"\n") for b in blocks[:-1])
    assert blocks[1].first_line == blocks[0].data.count(b"\n") + 1


def test_engine_streams_sources_into_rolling_parts_with_bad_rows_and_view(tmp_path: Path) -> None:
    schema = parse_schema_yaml(AD_EVENTS_V1)
    events = good_beacons() * 50
    body = gzip.compress(jsonl(events, [line for line, _ in BAD_LINES]))
    options = EngineOptions(block_bytes=8192, rows_per_part=200, row_group_rows=64)

    result = transform_sources(
        schema,
        [("a", lambda: io.BytesIO(body)), ("b", lambda: io.BytesIO(body))],
        dt=date(2026, 11, 24),
        workdir=tmp_path,
        options=options,
    )

    assert (result.rows_in, result.rows_out, result.rows_bad, result.sources) == (1112, 1100, 12, 2)
    assert [p.rows for p in result.parts] == [200] * 5 + [100]
    assert sum(pq.read_metadata(p.path).num_rows for p in result.parts) == 1100
    assert pq.read_metadata(result.parts[0].path).row_group(0).column(0).compression == "ZSTD"
    # dt lives in the partition path only; timestamps are instants (isAdjustedToUTC=true)
    file_schema = pq.read_schema(result.parts[0].path)
    assert "dt" not in file_schema.names
    assert file_schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    logical = pq.read_metadata(result.parts[0].path).schema.column(file_schema.get_field_index("event_time"))
    assert json.loads(logical.logical_type.to_json())["isAdjustedToUTC"] is True
    assert result.view is not None
    assert result.view.to_pylist()[0] == {
        "ad_id": "ad-1",
        "impressions": 500,
        "clicks": 200,
        "ctr": 0.4,
    }
    assert result.bad_rows_path is not None
    assert len(gzip.decompress(result.bad_rows_path.read_bytes()).splitlines()) == 12


def test_engine_writes_orc_with_snappy_when_asked(tmp_path: Path) -> None:
    schema = parse_schema_yaml(METER_READS_V1)
    body = jsonl([{"event_id": "m1", "cloud_id": "00042", "event_time": "2026-11-24T01:02:03Z", "demand_kw": 1.5}])

    result = transform_sources(
        schema,
        [("a", lambda: io.BytesIO(body))],
        dt=date(2026, 11, 24),
        workdir=tmp_path,
        options=EngineOptions(output_format="orc", compression="snappy"),
    )

    [part] = result.parts
    assert part.path.name == "part-00000.orc"
    table = orc.read_table(part.path)
    assert table.to_pylist() == [
        {
            "event_id": "m1",
            "cloud_id": "00042",
            "event_time": datetime(2026, 11, 24, 1, 2, 3, tzinfo=UTC),
            "demand_kw": 1.5,
            "summation_delivered_kwh": None,
            "summation_received_kwh": None,
        }
    ]


def test_advertising_view_sums_batches_and_keeps_ads_seen_without_impressions() -> None:
    view = AdvertisingView()
    view.add(pa.table({"ad_id": ["b", "a", None, "a"], "event_type": ["impression", "click", "click", "impression"]}))
    view.add(pa.table({"ad_id": ["a", "c", "b"], "event_type": ["impression", "other", "impression"]}))
    view.add(pa.table({"ad_id": pa.array([], pa.string()), "event_type": pa.array([], pa.string())}))

    rows = view.table().to_pylist()

    assert rows == [
        {"ad_id": "a", "impressions": 2, "clicks": 1, "ctr": 0.5},
        {"ad_id": "b", "impressions": 2, "clicks": 0, "ctr": 0.0},
        {"ad_id": "c", "impressions": 0, "clicks": 0, "ctr": 0.0},
    ]
    assert AdvertisingView().table().num_rows == 0


def test_a_malformed_timestamp_among_timestamps_of_one_shape_is_still_a_bad_row() -> None:
    mapper = BlockMapper(parse_schema_yaml(AD_EVENTS_V1), dt=date(2026, 11, 24))
    events = good_beacons()
    events[3]["received_at"] = "2026-11-24T10:0x:01.250Z"  # same length as its neighbours

    mapped = mapper.map_block(jsonl(events))

    assert mapped.vectorised and mapped.table.num_rows == len(events) - 1
    assert [(b.line, b.reason) for b in mapped.bad] == [
        (4, "type mismatch: received_at expects timestamp, got string (not an ISO-8601 timestamp)")
    ]
