"""Jobs API: validation naming the field, auth, readiness, traffic API edge cases, notification batching."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from services.loader import notify
from services.loader.wiring import LoaderWiring
from tests.loader.test_lifecycle import job_body


async def _fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return [d["field"] for d in response.json()["error"]["details"]]


async def test_invalid_jobs_get_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    # An unregistered schema version is now the documented 404 (was an undocumented 422), still naming the field.
    unregistered = await client.post("/v1/jobs", json=job_body(schema_version=9))
    assert unregistered.status_code == 404, unregistered.text
    assert unregistered.json()["error"]["details"][0]["field"] == "schema_version"
    body = job_body(start_date="2026-11-20", end_date="2026-11-19")
    assert "end_date" in await _fields(await client.post("/v1/jobs", json=body))
    for source in (
        "hw-raw/beacon/",
        "s3://hw-raw/beacon/YYYY/MM/",
        "s3://hw-raw/beacon/DD/MM/YYYY/",
        "s3://x/YYYY/MM/DD",
    ):
        assert "source" in await _fields(await client.post("/v1/jobs", json=job_body(source=source))), source
    assert "emails" in await _fields(await client.post("/v1/jobs", json=job_body(emails=["nope"])))
    assert (await client.get("/v1/jobs")).json() == []


async def test_mycroft_and_hive_layouts_are_accepted(client: httpx.AsyncClient) -> None:
    for source in ("s3://hw-raw/mylogs/YYYY/MM/DD/", "s3://hw-raw/beacon/dt={YYYY}-{MM}-{DD}/"):
        response = await client.post("/v1/jobs", json=job_body(source=source, start_date="2026-11-01"))
        assert response.status_code == 201, response.text
        assert response.json()["state"] == "active"
        assert response.json()["table"] == "ad_events"


async def test_writes_need_a_jobs_admin_key_and_reads_a_read_key(client: httpx.AsyncClient, read_key: str) -> None:
    reader = {"Authorization": f"Bearer {read_key}"}
    assert (await client.post("/v1/jobs", json=job_body(), headers={"Authorization": ""})).status_code == 401
    assert (await client.post("/v1/jobs", json=job_body(), headers=reader)).status_code == 403
    assert (await client.get("/v1/jobs", headers=reader)).status_code == 200
    assert (await client.get("/v1/jobs/999", headers=reader)).status_code == 404
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert {"redis", "database", "load_requests_queue", "s3_events_queue"} <= set(ready.json()["checks"])


async def test_pause_resume_and_cancel_follow_the_state_machine(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/v1/jobs", json=job_body())).json()["id"]
    assert (await client.post(f"/v1/jobs/{job_id}/resume")).status_code == 409
    paused = await client.post(f"/v1/jobs/{job_id}/pause")
    assert paused.json()["job"]["state"] == "paused"
    assert (await client.post(f"/v1/jobs/{job_id}/resume")).json()["job"]["state"] == "active"
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).json()["job"]["state"] == "cancelled"
    assert (await client.post(f"/v1/jobs/{job_id}/pause")).status_code == 409
    assert (await client.post(f"/v1/jobs/{job_id}/explode")).status_code == 404  # no such action route


async def test_traffic_rejects_a_bad_range_and_answers_an_unknown_ad_with_an_empty_series(
    client: httpx.AsyncClient,
) -> None:
    bad = await client.get("/v1/advertising/traffic/ad-1", params={"start": "2026-11-22", "end": "2026-11-20"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "end"
    malformed = await client.get("/v1/advertising/traffic/ad-1", params={"start": "22-11-2026", "end": "2026-11-20"})
    assert malformed.status_code == 422
    empty = await client.get("/v1/advertising/traffic/nobody", params={"start": "2026-11-20", "end": "2026-11-22"})
    assert empty.status_code == 200
    assert empty.json()["days"] == [] and empty.json()["totals"] == {"impressions": 0, "clicks": 0, "ctr": 0.0}


async def test_the_seed_traffic_path_is_an_alias_of_the_v1_path(client: httpx.AsyncClient) -> None:
    window = {"start": "2026-11-20", "end": "2026-11-22"}
    alias = await client.get("/advertising/traffic/nobody", params=window)
    assert alias.status_code == 200
    assert alias.json() == (await client.get("/v1/advertising/traffic/nobody", params=window)).json()
    bad = await client.get("/advertising/traffic/ad-1", params={"start": "2026-11-22", "end": "2026-11-20"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "end"


async def test_a_300_day_backfill_sends_one_summary_mail(wiring: LoaderWiring, smtp_sink: Any) -> None:
    _, sink = smtp_sink
    first = date(2025, 1, 1)
    for i in range(300):
        await notify.queue_notification(
            wiring.redis,
            wiring.settings,
            job_id=1,
            job_name="backfill",
            kind="loaded",
            dt=(first + timedelta(days=i)).isoformat(),
            detail="10 rows",
            recipients=["a@example.com"],
        )
    await notify.queue_notification(
        wiring.redis,
        wiring.settings,
        job_id=1,
        job_name="backfill",
        kind="failed",
        dt="2025-12-31",
        detail="boom",
        recipients=["a@example.com"],
    )
    assert await notify.flush_notifications(wiring.redis, wiring.settings) == 1
    assert len(sink.messages) == 1
    body = sink.messages[0].get_payload()
    assert "loaded: 300 dates from 2025-01-01 to 2025-10-27." in body
    assert "2025-12-31: boom" in body
    assert "1 failed, 300 loaded" in sink.messages[0]["Subject"]
    assert await notify.flush_notifications(wiring.redis, wiring.settings) == 0


def test_every_loader_route_is_documented_with_a_summary_and_a_response_model() -> None:
    from services.loader.app import create_app

    paths = create_app().openapi()["paths"]
    loader_paths = {path: ops for path, ops in paths.items() if path.startswith("/v1/")}
    assert len(loader_paths) == 10  # paths; 13 operations
    assert sum(len(operations) for operations in loader_paths.values()) == 13
    assert "/advertising/traffic/{ad_id}" not in paths  # the seed alias is served, not published
    for path, operations in loader_paths.items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            ok = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            assert "$ref" in str(ok["content"]["application/json"]["schema"]), (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in operation["responses"], (method, path)
