"""Per-date runs under control: pause and resume mid-way, cancel, delete with data, retries, retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from services.loader import scanner
from services.loader.notify import flush_notifications
from services.loader.retention import apply_retention_all
from services.loader.wiring import LoaderWiring
from shared.contracts import CuratedPartition
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, DAYS, job_body, runs_by_date, wait_states

D2, D3 = D1 + timedelta(days=1), D1 + timedelta(days=2)


async def _start(client: httpx.AsyncClient, aws: Any, wiring: LoaderWiring, **overrides: Any) -> int:
    response = await client.post("/v1/jobs", json=job_body(**overrides))
    assert response.status_code == 201, response.text
    s3 = await aws.get("s3")
    for day, ads in DAYS.items():
        await put_day(s3, wiring.settings, day, beacon_events(day, ads))
    return response.json()["id"]


async def _count(client: httpx.AsyncClient, day: Any) -> int:
    response = await client.get("/v1/warehouse/ad_events/count", params={"dt": day.isoformat()})
    return response.json()["rows"]


async def test_pause_mid_way_finishes_the_step_in_flight_and_resume_loads_the_rest(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    transform.gate.clear()  # hold the first transform
    job_id = await _start(client, aws, wiring)
    await wait_until(lambda: _has_requests(transform, 1), message="first transform request")
    assert (await client.post(f"/v1/jobs/{job_id}/pause")).json()["job"]["state"] == "paused"
    transform.gate.set()
    await wait_states(client, job_id, {D1.isoformat(): "loaded", D2.isoformat(): "waiting", D3.isoformat(): "waiting"})
    assert await scanner.scan_all(wiring) == 0  # a paused job is skipped
    assert len(transform.requests) == 1 and await _count(client, D2) == 0

    assert (await client.post(f"/v1/jobs/{job_id}/resume")).json()["job"]["state"] == "active"
    runs = await wait_states(client, job_id, {d.isoformat(): "loaded" for d in DAYS})
    assert [r.dt for r in transform.requests] == [D1, D2, D3]
    assert runs[D3.isoformat()]["rows_loaded"] == 11


async def _has_requests(transform: FakeTransform, n: int) -> bool:
    return len(transform.requests) >= n


async def test_cancel_stops_after_the_step_in_flight(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    transform.gate.clear()
    job_id = await _start(client, aws, wiring)
    await wait_until(lambda: _has_requests(transform, 1), message="first transform request")
    await wait_states(client, job_id, {D2.isoformat(): "waiting", D3.isoformat(): "waiting"})
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).json()["job"]["state"] == "cancelled"
    transform.gate.set()
    await wait_states(
        client, job_id, {D1.isoformat(): "cancelled", D2.isoformat(): "cancelled", D3.isoformat(): "cancelled"}
    )
    assert await scanner.scan_all(wiring) == 0
    assert len(transform.requests) == 1
    assert await _count(client, D1) == 0


async def test_delete_drops_the_loaded_dates_only_when_asked(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    job_id = await _start(client, aws, wiring)
    kept_id = (await client.post("/v1/jobs", json=job_body(table="ad_events_copy", end_date=D1.isoformat()))).json()
    await wait_states(client, job_id, {d.isoformat(): "loaded" for d in DAYS})
    await wait_states(client, kept_id["id"], {D1.isoformat(): "loaded"})
    assert await _count(client, D2) == 8

    deleted = await client.delete(f"/v1/jobs/{job_id}", params={"drop_data": "true"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["dates_dropped"] == 3
    assert [await _count(client, day) for day in DAYS] == [0, 0, 0]
    assert (await client.get(f"/v1/jobs/{job_id}")).status_code == 404
    assert (await client.get(f"/v1/jobs/{job_id}/runs")).status_code == 404

    assert (await client.delete(f"/v1/jobs/{kept_id['id']}")).json()["dates_dropped"] == 0
    copy = await client.get("/v1/warehouse/ad_events_copy/count", params={"dt": D1.isoformat()})
    assert copy.json()["rows"] == 10


async def test_a_failing_date_retries_with_backoff_is_marked_failed_notified_and_retried_from_the_api(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring, smtp_sink: Any
) -> None:
    transform.fail_dates.add(D2)
    job_id = await _start(client, aws, wiring, end_date=D2.isoformat())

    async def _rescan() -> dict | None:
        await scanner.scan_all(wiring)  # the cron's part: dispatch dates whose backoff has passed
        runs = await runs_by_date(client, job_id)
        return runs if runs.get(D2.isoformat(), {}).get("state") == "failed" else None

    runs = await wait_until(_rescan, timeout=30, message="D2 never failed")
    assert runs[D1.isoformat()]["state"] == "loaded"
    failed = runs[D2.isoformat()]
    assert failed["attempts"] == 2 and "mapping exploded" in failed["error"]
    assert [r.dt for r in transform.requests].count(D2) == 2
    history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
    d2_events = [e["event"] for e in history if e["dt"] == D2.isoformat()]
    assert d2_events == ["discovered", "transform_requested", "attempt_failed", "transform_requested", "failed"]

    _, sink = smtp_sink
    await flush_notifications(wiring.redis, wiring.settings)
    assert any("1 failed" in m["Subject"] and "mapping exploded" in m.get_payload() for m in sink.messages)

    transform.fail_dates.clear()
    retried = await client.post(f"/v1/jobs/{job_id}/runs/{D2.isoformat()}/retry")
    assert retried.status_code == 200, retried.text
    runs = await wait_states(client, job_id, {D2.isoformat(): "loaded"})
    assert runs[D2.isoformat()]["rows_loaded"] == 8 and runs[D2.isoformat()]["attempts"] == 1
    assert (await client.post(f"/v1/jobs/{job_id}/runs/{D2.isoformat()}/retry")).status_code == 409


async def test_an_s3_error_during_the_load_is_retried_and_succeeds(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    transform.manifest_late.add(D1)  # the LoadRequest arrives before its manifest is readable: NoSuchKey once
    job_id = await _start(client, aws, wiring, end_date=D1.isoformat())

    async def _retrying() -> bool:
        history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
        return any(e["event"] == "load_retry" and "NoSuchKey" in e["detail"] for e in history)

    await wait_until(_retrying, message="the load never hit the S3 error")
    await transform.release_manifest(D1)
    runs = await wait_states(client, job_id, {D1.isoformat(): "loaded"})
    assert runs[D1.isoformat()]["rows_loaded"] == 10 and runs[D1.isoformat()]["attempts"] == 1
    assert runs[D1.isoformat()]["error"] is None


async def test_retention_removes_only_dates_older_than_the_window(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    today = scanner.today_utc()
    days = [today - timedelta(days=n) for n in (5, 4, 3, 2, 1)]
    response = await client.post(
        "/v1/jobs", json=job_body(start_date=days[0].isoformat(), end_date=days[-1].isoformat(), retention_days=3)
    )
    job_id = response.json()["id"]
    s3 = await aws.get("s3")
    for day in days:
        await put_day(s3, wiring.settings, day, beacon_events(day, {"ad-9": (2, 1)}))
    await wait_states(client, job_id, {d.isoformat(): "loaded" for d in days})
    window = {"start": days[0].isoformat(), "end": days[-1].isoformat()}
    before = (await client.get("/v1/advertising/traffic/ad-9", params=window)).json()
    assert [d["dt"] for d in before["days"]] == [d.isoformat() for d in days]

    assert await apply_retention_all(wiring) == 2
    runs = await runs_by_date(client, job_id)
    assert [runs[d.isoformat()]["state"] for d in days] == ["expired", "expired", "loaded", "loaded", "loaded"]
    assert [await _count(client, d) for d in days] == [0, 0, 3, 3, 3]
    curated = wiring.settings.bucket("curated")
    old = await s3.list_objects_v2(Bucket=curated, Prefix=CuratedPartition("ad_events", 1, days[0]).day_prefix)
    kept = await s3.list_objects_v2(Bucket=curated, Prefix=CuratedPartition("ad_events", 1, days[2]).day_prefix)
    assert old.get("KeyCount", 0) == 0 and kept["KeyCount"] == 2
    history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
    expired = [e for e in history if e["event"] == "expired"]
    assert sorted(e["dt"] for e in expired) == [days[0].isoformat(), days[1].isoformat()]
    assert "deleted 3 rows" in expired[0]["detail"] and "1 traffic items" in expired[0]["detail"]
    after = (await client.get("/v1/advertising/traffic/ad-9", params=window)).json()
    assert [d["dt"] for d in after["days"]] == [d.isoformat() for d in days[2:]]
    assert await apply_retention_all(wiring) == 0


async def test_a_transform_failing_after_cancel_leaves_the_date_cancelled(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    transform.gate.clear()
    transform.fail_dates.add(D1)
    job_id = await _start(client, aws, wiring, end_date=D1.isoformat())
    await wait_until(lambda: _has_requests(transform, 1), message="first transform request")
    assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
    transform.gate.set()
    runs = await wait_states(client, job_id, {D1.isoformat(): "cancelled"})
    assert runs[D1.isoformat()]["attempts"] == 1
    assert await scanner.scan_all(wiring) == 0 and len(transform.requests) == 1
