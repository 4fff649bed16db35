"""Publishing a partition: idempotent re-runs replace the output atomically, hour runs, empty partitions."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from services.transform.builtin_schemas import AD_EVENTS_V1
from services.transform.local_partition import run_local_partition
from services.transform.settings import TransformSettings
from services.transform.storage import sync_client
from shared.contracts import CuratedPartition, Manifest
from shared.schemas import parse_schema_yaml
from tests.transform.sample import BAD_LINES, DT, good_beacons, jsonl, put_raw

SCHEMA = parse_schema_yaml(AD_EVENTS_V1)
PREFIX = f"beacon/dt={DT}/"


async def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    response = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


async def _run(settings: TransformSettings, transform_id: str, hour: int | None = None) -> Any:
    client = sync_client(settings)
    try:
        return await asyncio.to_thread(
            run_local_partition,
            client,
            settings,
            schema=SCHEMA,
            source_bucket=settings.bucket("raw"),
            source_prefix=PREFIX,
            dt=date(2026, 11, 24),
            hour=hour,
            transform_id=transform_id,
        )
    finally:
        client.close()


async def test_rerun_replaces_parts_manifest_and_bad_rows(settings: TransformSettings, s3: Any) -> None:
    small = settings.model_copy(update={"rows_per_part": 4, "row_group_rows": 2})
    raw, curated, bad = settings.bucket("raw"), settings.bucket("curated"), settings.bucket("bad-rows")
    await put_raw(s3, raw, f"{PREFIX}hour=10/a.json.gz", jsonl(good_beacons(), [BAD_LINES[0][0]]))
    first = await _run(small, "first")
    assert await _keys(s3, curated, f"ad_events/v1/dt={DT}/") == [
        f"ad_events/v1/dt={DT}/_manifest.json",
        *(f"ad_events/v1/dt={DT}/part-0000{i}.parquet" for i in range(3)),
    ]
    assert first.rows_out == 11 and first.bad_rows_key == f"ad_events/dt={DT}/first.jsonl.gz"

    await put_raw(s3, raw, f"{PREFIX}hour=10/a.json.gz", jsonl(good_beacons()[:5], [BAD_LINES[1][0]]))
    second = await _run(small, "second")

    assert await _keys(s3, curated, f"ad_events/v1/dt={DT}/") == [
        f"ad_events/v1/dt={DT}/_manifest.json",
        f"ad_events/v1/dt={DT}/part-00000.parquet",
        f"ad_events/v1/dt={DT}/part-00001.parquet",
    ]
    manifest = json.loads(await (await s3.get_object(Bucket=curated, Key=second.manifest_key))["Body"].read())
    assert manifest["headwater"]["transform_id"] == "second"
    assert [e["meta"]["record_count"] for e in manifest["entries"]] == [4, 1]
    assert await _keys(s3, bad) == [f"ad_events/dt={DT}/second.jsonl.gz"]
    assert (second.rows_in, second.rows_out, second.rows_bad) == (6, 5, 1)


async def test_an_hour_run_reads_only_that_hour_and_publishes_under_it(settings: TransformSettings, s3: Any) -> None:
    raw, curated = settings.bucket("raw"), settings.bucket("curated")
    events = good_beacons()
    await put_raw(s3, raw, f"{PREFIX}hour=10/a.json.gz", jsonl(events[:4]))
    await put_raw(s3, raw, f"{PREFIX}hour=11/b.json.gz", jsonl(events[4:]))

    outcome = await _run(settings, "hourly", hour=11)

    assert (outcome.rows_out, outcome.sources) == (7, 1)
    assert outcome.manifest_key == f"ad_events/v1/dt={DT}/hour=11/_manifest.json"
    assert outcome.advertising_view_key is None
    assert f"ad_events/v1/dt={DT}/hour=11/part-00000.parquet" in await _keys(s3, curated)


async def test_an_empty_partition_publishes_an_empty_manifest(settings: TransformSettings, s3: Any) -> None:
    await s3.put_object(Bucket=settings.bucket("raw"), Key=f"{PREFIX}_COMPLETE", Body=b"{}")

    outcome = await _run(settings, "empty")

    manifest = json.loads(
        await (await s3.get_object(Bucket=settings.bucket("curated"), Key=outcome.manifest_key))["Body"].read()
    )
    assert manifest["entries"] == [] and manifest["headwater"]["rows"] == 0
    assert (outcome.rows_in, outcome.sources) == (0, 0)


async def test_the_published_manifest_is_the_shared_contract(settings: TransformSettings, s3: Any) -> None:
    await put_raw(s3, settings.bucket("raw"), f"{PREFIX}hour=10/a.json.gz", jsonl(good_beacons()))
    partition = CuratedPartition("ad_events", 1, date(2026, 11, 24))

    outcome = await _run(settings, "contract")

    body = await (await s3.get_object(Bucket=settings.bucket("curated"), Key=partition.manifest))["Body"].read()
    manifest = Manifest.decode(body)
    assert outcome.manifest_key == partition.manifest
    assert manifest.part_keys() == [partition.part(0)]
    assert (manifest.headwater.transform_id, manifest.headwater.rows) == ("contract", outcome.rows_out)
    assert manifest.headwater.advertising_view_key == partition.advertising_view


async def test_a_rerun_replaces_a_manifest_that_is_not_one(settings: TransformSettings, s3: Any) -> None:
    curated = settings.bucket("curated")
    partition = CuratedPartition("ad_events", 1, date(2026, 11, 24))
    await put_raw(s3, settings.bucket("raw"), f"{PREFIX}hour=10/a.json.gz", jsonl(good_beacons()))
    await s3.put_object(Bucket=curated, Key=partition.manifest, Body=b'{"entries": "truncated')

    outcome = await _run(settings, "repair")

    body = await (await s3.get_object(Bucket=curated, Key=partition.manifest))["Body"].read()
    assert Manifest.decode(body).headwater.transform_id == "repair" == outcome.transform_id
