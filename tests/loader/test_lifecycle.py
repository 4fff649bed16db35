"""The whole job lifecycle against moto, real Redis and the in-process worker, with a fake transform."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx

from services.loader.notify import flush_notifications
from services.loader.wiring import LoaderWiring
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day

D1 = date(2026, 11, 20)
DAYS = {
    D1: {"ad-1": (5, 2), "ad-2": (3, 0)},
    D1 + timedelta(days=1): {"ad-1": (7, 1)},
    D1 + timedelta(days=2): {"ad-1": (4, 4), "ad-3": (2, 1)},
}


def job_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "ads",
        "schema_name": "ad_events",
        "schema_version": 1,
        "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
        "start_date": D1.isoformat(),
        "end_date": (D1 + timedelta(days=2)).isoformat(),
        "emails": ["ops@example.com"],
    }
    body.update(overrides)
    return body


async def runs_by_date(client: httpx.AsyncClient, job_id: int) -> dict[str, dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/runs")
    response.raise_for_status()
    return {run["dt"]: run for run in response.json()}


async def wait_states(client: httpx.AsyncClient, job_id: int, expected: dict[str, str], timeout: float = 30) -> dict:
    async def _probe() -> dict | None:
        runs = await runs_by_date(client, job_id)
        return runs if {dt: runs.get(dt, {}).get("state") for dt in expected} == expected else None

    return await wait_until(_probe, timeout=timeout, message=f"runs never reached {expected}")


async def test_three_days_are_transformed_and_loaded_in_order_with_exact_counts(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring, smtp_sink: Any
) -> None:
    created = await client.post("/v1/jobs", json=job_body())
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    s3 = await aws.get("s3")
    for day, ads in DAYS.items():
        await put_day(s3, wiring.settings, day, beacon_events(day, ads))

    runs = await wait_states(client, job_id, {d.isoformat(): "loaded" for d in DAYS})

    for day, ads in DAYS.items():
        expected = sum(i + c for i, c in ads.values())
        assert runs[day.isoformat()]["rows_loaded"] == expected
        assert runs[day.isoformat()]["attempts"] == 1
        count = await client.get("/v1/warehouse/ad_events/count", params={"dt": day.isoformat()})
        assert count.json()["rows"] == expected
    # Transformed and loaded in date order (one date in flight at a time).
    assert [r.dt for r in transform.requests] == sorted(DAYS)
    finished = [runs[d.isoformat()]["finished_at"] for d in sorted(DAYS)]
    assert finished == sorted(finished)
    assert transform.requests[0].source_prefix == "beacon/dt=2026-11-20/"

    # Traffic API: exact per-day numbers and totals.
    traffic = await client.get("/v1/advertising/traffic/ad-1", params={"start": "2026-11-20", "end": "2026-11-22"})
    assert traffic.status_code == 200
    series = traffic.json()
    assert [(d["dt"], d["impressions"], d["clicks"]) for d in series["days"]] == [
        ("2026-11-20", 5, 2),
        ("2026-11-21", 7, 1),
        ("2026-11-22", 4, 4),
    ]
    assert series["totals"]["impressions"] == 16 and series["totals"]["clicks"] == 7
    assert abs(series["totals"]["ctr"] - 7 / 16) < 1e-9

    # One mail for the three loaded dates.
    _, sink = smtp_sink
    assert await flush_notifications(wiring.redis, wiring.settings) == 1
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert "3 loaded" in mail["Subject"]
    assert "ops@example.com" in mail["X-Envelope-To"]
    body = mail.get_payload()
    assert all(d.isoformat() in body for d in DAYS)

    # VACUUM/ANALYZE cadence: every 2nd load of the table (maintenance_every_loads=2 in the tests).
    history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
    assert [e["dt"] for e in history if e["event"] == "maintained"] == [(D1 + timedelta(days=1)).isoformat()]

    listed = (await client.get("/v1/jobs")).json()
    assert listed[0]["runs"] == {"loaded": 3}


async def test_duplicate_marker_events_and_scans_never_load_twice(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    from services.loader import scanner

    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D1.isoformat()))).json()["id"]
    s3 = await aws.get("s3")
    await put_day(s3, wiring.settings, D1, beacon_events(D1, DAYS[D1]))
    await put_day(s3, wiring.settings, D1, beacon_events(D1, DAYS[D1]))  # marker written twice: two events
    await scanner.scan_all(wiring)
    await wait_states(client, job_id, {D1.isoformat(): "loaded"})
    await scanner.scan_all(wiring)
    runs = await runs_by_date(client, job_id)
    assert len(runs) == 1 and runs[D1.isoformat()]["attempts"] == 1
    assert len(transform.requests) == 1
    count = await client.get("/v1/warehouse/ad_events/count", params={"dt": D1.isoformat()})
    assert count.json()["rows"] == 10
