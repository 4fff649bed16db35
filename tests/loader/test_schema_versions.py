"""Moving a job to a newer schema version: later dates use it, the table gains columns, none are dropped."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from services.loader.warehouse.duckdb import DuckDBWarehouse
from services.loader.wiring import LoaderWiring
from tests.loader.fake_transform import (
    AD_EVENTS_V2_YAML,
    AD_EVENTS_YAML,
    FakeTransform,
    beacon_events,
    put_day,
    put_schema,
)
from tests.loader.test_lifecycle import D1, job_body, wait_states

D2 = D1 + timedelta(days=1)


async def test_a_job_moved_to_v2_loads_later_dates_with_the_added_column(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    s3 = await aws.get("s3")
    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D2.isoformat()))).json()["id"]
    await put_day(s3, wiring.settings, D1, beacon_events(D1, {"ad-1": (2, 0)}))
    await wait_states(client, job_id, {D1.isoformat(): "loaded"})

    await put_schema(s3, wiring.settings, AD_EVENTS_V2_YAML, version=2)
    patched = await client.patch(f"/v1/jobs/{job_id}", json={"schema_version": 2, "retention_days": 400})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["schema_version"], patched.json()["retention_days"]) == (2, 400)
    await put_day(s3, wiring.settings, D2, beacon_events(D2, {"ad-1": (3, 0)}))
    await wait_states(client, job_id, {D2.isoformat(): "loaded"})

    assert [(r.dt, r.schema_version) for r in transform.requests] == [(D1, 1), (D2, 2)]
    warehouse = DuckDBWarehouse(wiring.settings.warehouse_path)
    columns = [row[0] for row in await warehouse.fetch("DESCRIBE ad_events")]
    per_day = await warehouse.fetch("SELECT dt, count(*) FROM ad_events GROUP BY dt ORDER BY dt")
    assert "country" in columns and "placement" in columns
    assert per_day == [(D1, 2), (D2, 3)]


async def test_a_version_that_drops_columns_is_refused_naming_the_field(
    client: httpx.AsyncClient, aws: Any, wiring: LoaderWiring
) -> None:
    s3 = await aws.get("s3")
    v3 = AD_EVENTS_YAML.replace("version: 1", "version: 3").replace("  - {name: placement, type: varchar(128)}\n", "")
    await put_schema(s3, wiring.settings, v3, version=3)
    job_id = (await client.post("/v1/jobs", json=job_body())).json()["id"]
    refused = await client.patch(f"/v1/jobs/{job_id}", json={"schema_version": 3})
    assert refused.status_code == 422
    detail = refused.json()["error"]["details"][0]
    assert detail["field"] == "schema_version" and "placement" in detail["reason"]
    missing = await client.patch(f"/v1/jobs/{job_id}", json={"schema_version": 7})
    assert missing.status_code == 404  # an unregistered version: the documented 404 (was 422)
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["schema_version"] == 1
