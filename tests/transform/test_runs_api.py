"""Transform runs API: start runs for a date range, follow their state and figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from services.transform.settings import TransformSettings
from tests.transform.sample import beacon, good_beacons, jsonl, put_raw


async def test_a_date_range_starts_one_run_per_date_and_reports_figures(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw = settings.bucket("raw")
    await put_raw(s3, raw, "beacon/dt=2026-11-24/hour=10/a.json.gz", jsonl(good_beacons()))
    await put_raw(
        s3,
        raw,
        "beacon/dt=2026-11-25/hour=00/a.json.gz",
        jsonl([beacon(1, event_time="2026-11-25T00:00:01Z"), beacon(2, event_time="bad")]),
    )
    body = {
        "table": "ad_events",
        "version": 1,
        "source_path": f"s3://{raw}/beacon/dt={{dt}}/",
        "start": "2026-11-24",
        "end": "2026-11-25",
    }

    created = await app_client.post("/v1/transforms", json=body, headers=admin_headers)
    await burst_worker()

    assert created.status_code == 202, created.text
    ids = [item["id"] for item in created.json()["items"]]
    assert [item["state"] for item in created.json()["items"]] == ["queued", "queued"]
    runs = [(await app_client.get(f"/v1/transforms/{i}", headers=admin_headers)).json() for i in ids]
    assert [(r["dt"], r["state"], r["rows_in"], r["rows_out"], r["rows_bad"]) for r in runs] == [
        ("2026-11-24", "succeeded", 11, 11, 0),
        ("2026-11-25", "succeeded", 2, 1, 1),
    ]
    assert runs[0]["manifest_url"] == "s3://hw-curated/ad_events/v1/dt=2026-11-24/_manifest.json"
    assert runs[1]["bad_rows_url"] == f"s3://hw-bad-rows/ad_events/dt=2026-11-25/{ids[1]}.jsonl.gz"
    assert runs[0]["bytes_out"] > 0 and runs[0]["duration_s"] is not None
    listed = await app_client.get("/v1/transforms", params={"state": "succeeded"}, headers=admin_headers)
    assert sorted(i["id"] for i in listed.json()["items"]) == sorted(ids)


async def test_a_run_for_an_unknown_schema_is_refused(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {"table": "nope", "version": 3, "source_path": "s3://hw-raw/x/dt={dt}/", "dt": "2026-11-24"}

    response = await app_client.post("/v1/transforms", json=body, headers=admin_headers)

    assert response.status_code == 404


async def test_dates_must_be_one_day_or_a_range(app_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    body = {"table": "ad_events", "version": 1, "source_path": "s3://hw-raw/x/dt={dt}/", "start": "2026-11-24"}

    response = await app_client.post("/v1/transforms", json=body, headers=admin_headers)

    assert response.status_code == 422
    assert "either dt, or start and end" in response.json()["error"]["details"][0]["reason"]


async def test_unknown_run_is_404(app_client: httpx.AsyncClient, read_headers: dict[str, str]) -> None:
    response = await app_client.get("/v1/transforms/nope", headers=read_headers)

    assert response.status_code == 404
