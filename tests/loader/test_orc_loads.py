"""ORC partitions load as Parquet ones do: transform's ORC parts (manifest format ``orc``) are read by the DuckDB
and Postgres warehouses (rewritten as Parquet on the way) and named ``FORMAT AS ORC`` in Redshift's COPY."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from services.loader.warehouse.duckdb import DuckDBWarehouse
from services.loader.warehouse.redshift import load_sqls
from shared.schemas import parse_schema_yaml
from tests.loader.fake_transform import AD_EVENTS_YAML, FakeTransform
from tests.loader.test_lifecycle import D1, DAYS, wait_states
from tests.loader.test_runs import _start

EXPECTED = {day.isoformat(): sum(i + c for i, c in ads.values()) for day, ads in DAYS.items()}
# beacon_events stamps the first impression of each ad at 00:00:00 of its day
FIRST_EVENT = ("ad-1-impression-2026-11-20-0", datetime(2026, 11, 20, 0, 0, 0, tzinfo=UTC))


async def _load_orc_days(client: httpx.AsyncClient, aws: Any, wiring: Any, transform: FakeTransform, **job: Any) -> int:
    transform.output_format = "orc"
    job_id = await _start(client, aws, wiring, **job)
    runs = await wait_states(client, job_id, {day: "loaded" for day in EXPECTED})
    assert {day: runs[day]["rows_loaded"] for day in EXPECTED} == EXPECTED
    # the parts really were ORC
    s3 = await aws.get("s3")
    listed = await s3.list_objects_v2(Bucket=wiring.settings.bucket("curated"), Prefix=f"ad_events/v1/dt={D1}/")
    assert [o["Key"].rsplit("/", 1)[-1] for o in listed["Contents"] if "part-" in o["Key"]] == ["part-00000.orc"]
    return job_id


async def test_orc_days_load_into_duckdb_with_their_values(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: Any
) -> None:
    await _load_orc_days(client, aws, wiring, transform)
    for day, rows in EXPECTED.items():
        count = await client.get("/v1/warehouse/ad_events/count", params={"dt": day})
        assert count.json()["rows"] == rows
    warehouse = DuckDBWarehouse(wiring.settings.warehouse_path)
    found = await warehouse.fetch("SELECT event_id, event_time, dt FROM ad_events WHERE event_id = ?", [FIRST_EVENT[0]])
    # timestamps are stored as UTC wall clock (DuckDB's TIMESTAMP), as the Parquet path stores them
    assert found == [(FIRST_EVENT[0], FIRST_EVENT[1].replace(tzinfo=None), D1)]


@pytest.mark.on_postgres
async def test_orc_days_load_into_postgres_with_their_values(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: Any
) -> None:
    await _load_orc_days(client, aws, wiring, transform, warehouse="postgres")
    con = await asyncpg.connect(wiring.settings.postgres_warehouse_url)
    try:
        rows = await con.fetch("SELECT dt, count(*) AS n FROM ad_events GROUP BY dt ORDER BY dt")
        assert {r["dt"].isoformat(): r["n"] for r in rows} == EXPECTED
        stamp = await con.fetchval("SELECT event_time FROM ad_events WHERE event_id = $1", FIRST_EVENT[0])
        assert stamp == FIRST_EVENT[1].replace(tzinfo=None)
    finally:
        await con.close()


def test_redshift_copies_orc_parts_natively() -> None:
    schema = parse_schema_yaml(AD_EVENTS_YAML)
    manifest = "s3://hw-curated/ad_events/v1/dt=2026-11-20/_manifest.json"
    copy = load_sqls("ad_events", schema, date(2026, 11, 20), manifest, "arn:aws:iam::1:role/c", file_format="ORC")[2]
    assert copy == f"COPY \"ad_events__load\" FROM '{manifest}' IAM_ROLE 'arn:aws:iam::1:role/c' FORMAT AS ORC MANIFEST"
