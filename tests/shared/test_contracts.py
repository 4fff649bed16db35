"""The formats services hand each other through S3 are defined once: writers and readers agree by construction."""

from datetime import date

import pytest
from pydantic import ValidationError

from shared.contracts import (
    CuratedPartition,
    Manifest,
    ManifestDetails,
    ManifestEntry,
    ManifestEntryMeta,
    RawRecord,
    advertising_view_day_prefix,
    day_marker_key,
    parse_partition,
    raw_object_key,
    schema_key,
    source_of,
)


def test_raw_keys_are_hive_partitioned_and_parse_back() -> None:
    key = raw_object_key("beacon", date(2026, 11, 24), 7, "seg-1", 3)
    assert key == "beacon/dt=2026-11-24/hour=07/seg-1-n3.json.gz"
    assert parse_partition(key) == (date(2026, 11, 24), 7)
    assert parse_partition(day_marker_key("beacon", "2026-11-24")) == (date(2026, 11, 24), None)
    assert parse_partition("beacon/no-partition/x.json.gz") is None
    assert source_of("click") == source_of("impression") == "beacon"
    assert source_of("meter_read") == "meter_read"


def test_curated_partition_keys_keep_views_beside_tables() -> None:
    part = CuratedPartition("ad_events", 1, date(2026, 11, 24))
    assert part.manifest == "ad_events/v1/dt=2026-11-24/_manifest.json"
    assert part.part(3) == "ad_events/v1/dt=2026-11-24/part-00003.parquet"
    assert part.advertising_view.startswith(advertising_view_day_prefix("ad_events", 1, "2026-11-24"))
    # A glob over the table's own prefix never reaches the views (they live under _views/).
    assert not part.advertising_view.startswith("ad_events/")
    assert CuratedPartition("t", 2, date(2026, 1, 1), hour=5).prefix == "t/v2/dt=2026-01-01/hour=05/"
    assert schema_key("ad_events", 3) == "_schemas/ad_events/v3.yaml"


def test_manifest_round_trips_and_rejects_what_is_not_one() -> None:
    part = CuratedPartition("ad_events", 1, date(2026, 11, 24))
    manifest = Manifest(
        entries=[
            ManifestEntry(
                url=f"s3://hw-curated/{part.part(0)}", meta=ManifestEntryMeta(content_length=10, record_count=4)
            )
        ],
        headwater=ManifestDetails(table="ad_events", version=1, dt=part.dt, rows=4, transform_id="t1"),
    )
    decoded = Manifest.decode(manifest.encode())
    assert decoded == manifest
    assert decoded.part_keys() == [part.part(0)]
    with pytest.raises(ValidationError):
        Manifest.decode(b'{"entries": []}')


def test_raw_record_keeps_fields_of_other_event_types() -> None:
    record = RawRecord.model_validate(
        {
            "event_id": "e1",
            "type": "signup",
            "source": "signup",
            "event_time": "2026-11-24T00:00:00.000Z",
            "received_at": "2026-11-24T00:00:01.000Z",
            "plan": "pro",
        }
    )
    assert record.model_dump()["plan"] == "pro"
