"""Hostile input to the loader (issue #13): each answer is a documented 4xx, and no client can destroy by mistake
what another job loaded."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from services.loader import notify
from services.loader.models import JobRun, RunEvent, RunState
from services.loader.wiring import LoaderWiring
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import job_body, wait_states

D1 = date(2026, 11, 20)
ACCOUNT = "123456789012"
ARN = f"arn:aws:iam::{ACCOUNT}:role/headwater-loader"


def _error_shape(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


async def test_integers_beyond_the_id_range_in_path_and_body_are_422(client: httpx.AsyncClient) -> None:
    for path in ("/v1/jobs/99999999999999999999", "/v1/jobs/9223372036854775808", "/v1/jobs/0"):
        response = await client.get(path)
        assert response.status_code == 422, (path, response.text)
        _error_shape(response)
    for method, path in (
        ("PATCH", "/v1/jobs/99999999999999999999"),
        ("DELETE", "/v1/jobs/99999999999999999999"),
        ("POST", "/v1/jobs/99999999999999999999/pause"),
        ("POST", "/v1/jobs/99999999999999999999/runs/2026-11-20/retry"),
        ("GET", "/v1/jobs/99999999999999999999/runs"),
        ("GET", "/v1/jobs/99999999999999999999/history"),
    ):
        response = await client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 422, (method, path, response.text)
    for bad in ({"retention_days": 1e20}, {"retention_days": 10**20}, {"schema_version": 2**63}):
        created = await client.post("/v1/jobs", json=job_body(**bad))
        assert created.status_code == 422, (bad, created.text)
        assert _error_shape(created)["details"][0]["field"] in bad
    job_id = (await client.post("/v1/jobs", json=job_body())).json()["id"]
    patched = await client.patch(f"/v1/jobs/{job_id}", json={"retention_days": 1e20})
    assert patched.status_code == 422, patched.text
    # Dates are YYYY-MM-DD as the spec says, not a number read as a Unix time.
    for params in ({"dt": "0"}, {"dt": "2026-1-1"}):
        assert (await client.get("/v1/warehouse/ad_events/count", params=params)).status_code == 422, params
    assert (await client.post("/v1/jobs", json=job_body(start_date=0))).status_code == 422


def test_the_spec_declares_the_bounds_the_server_enforces() -> None:
    from services.loader.app import create_app
    from services.loader.settings import LoaderSettings

    spec = create_app(LoaderSettings()).openapi()
    job_id = next(p for p in spec["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"] if p["name"] == "job_id")
    assert job_id["schema"]["minimum"] == 1 and job_id["schema"]["maximum"] == 2**31 - 1
    create = spec["components"]["schemas"]["JobCreate"]["properties"]
    retention = next(s for s in create["retention_days"]["anyOf"] if s.get("type") == "integer")
    assert retention["maximum"] <= 36500
    assert "pattern" in create["name"] and "pattern" in create["emails"]["items"]
    traffic = spec["paths"]["/v1/advertising/traffic/{ad_id}"]["get"]
    assert "at most" in traffic["description"] and "422" in traffic["responses"]


async def test_job_names_with_line_breaks_are_refused(client: httpx.AsyncClient) -> None:
    for name in ("ads\r\nBcc: victim@example.com", "ads\nx", "tab\tname", "   "):
        response = await client.post("/v1/jobs", json=job_body(name=name))
        assert response.status_code == 422, (name, response.text)
        assert _error_shape(response)["details"][0]["field"] == "name"


async def test_one_bad_notification_never_drops_the_others(wiring: LoaderWiring, smtp_sink: Any) -> None:
    _, sink = smtp_sink
    # A job stored before names were validated: its header-breaking name must not sink the whole flush.
    for job_id, name in ((1, "legacy\r\nBcc: victim@example.com"), (2, "good job")):
        await notify.queue_notification(
            wiring.redis,
            wiring.settings,
            job_id=job_id,
            job_name=name,
            kind="loaded",
            dt="2026-11-20",
            detail="10 rows",
            recipients=["ops@example.com"],
        )
    assert await notify.flush_notifications(wiring.redis, wiring.settings) == 2
    subjects = sorted(str(message["Subject"]) for message in sink.messages)
    assert len(subjects) == 2 and any("good job" in subject for subject in subjects)
    assert all("\n" not in s and "\r" not in s for s in subjects)
    assert not any(message["Bcc"] for message in sink.messages)
    assert all("victim" not in message["X-Envelope-To"] for message in sink.messages)
    assert await notify.flush_notifications(wiring.redis, wiring.settings) == 0  # nothing left queued


async def test_drop_data_refuses_dates_another_job_loads_too(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    await put_day(await aws.get("s3"), wiring.settings, D1, beacon_events(D1, {"ad-1": (5, 2)}))
    first = (await client.post("/v1/jobs", json=job_body(name="first", end_date=D1.isoformat()))).json()["id"]
    await wait_states(client, first, {D1.isoformat(): "loaded"})
    second = (await client.post("/v1/jobs", json=job_body(name="second", end_date=D1.isoformat()))).json()["id"]
    await wait_states(client, second, {D1.isoformat(): "loaded"})

    refused = await client.delete(f"/v1/jobs/{first}", params={"drop_data": "true"})

    assert refused.status_code == 409, refused.text
    error = _error_shape(refused)
    assert f"job {second}" in error["message"] and "second" in error["message"]
    assert (await client.get(f"/v1/jobs/{first}")).status_code == 200  # nothing deleted
    count = await client.get("/v1/warehouse/ad_events/count", params={"dt": D1.isoformat()})
    assert count.json()["rows"] == 7
    # Without drop_data the job goes and the shared date stays; the last job to own the date may drop it.
    assert (await client.delete(f"/v1/jobs/{first}")).json() == {"job_id": first, "deleted": True, "dates_dropped": 0}
    assert (await client.get("/v1/warehouse/ad_events/count", params={"dt": D1.isoformat()})).json()["rows"] == 7
    dropped = await client.delete(f"/v1/jobs/{second}", params={"drop_data": "true"})
    assert dropped.json() == {"job_id": second, "deleted": True, "dates_dropped": 1}
    assert (await client.get("/v1/warehouse/ad_events/count", params={"dt": D1.isoformat()})).json()["rows"] == 0


async def _assert_ids_are_never_reused(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    for _ in range(3):
        created = await client.post("/v1/jobs", json=job_body())
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        seen.append(job_id)
        assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 200
        assert (await client.delete(f"/v1/jobs/{job_id}")).status_code == 404
    assert len(set(seen)) == 3 and seen == sorted(seen), seen


async def test_job_ids_are_never_reused_after_delete(client: httpx.AsyncClient) -> None:
    await _assert_ids_are_never_reused(client)


@pytest.mark.on_postgres
async def test_job_ids_are_never_reused_after_delete_on_postgres(client: httpx.AsyncClient) -> None:
    await _assert_ids_are_never_reused(client)


async def test_errors_shown_by_the_api_do_not_reveal_the_aws_account(
    client: httpx.AsyncClient, wiring: LoaderWiring, read_key: str
) -> None:
    job_id = (await client.post("/v1/jobs", json=job_body())).json()["id"]
    error = (
        f"AccessDenied: User: {ARN} is not authorized to perform: s3:GetObject on "
        f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/hw-load-requests (account {ACCOUNT})"
    )
    async with wiring.sessions() as session:
        session.add(JobRun(job_id=job_id, dt=D1, state=RunState.FAILED, error=error))
        session.add(RunEvent(job_id=job_id, dt=D1, event="failed", detail=error))
        await session.commit()
    reader = {"Authorization": f"Bearer {read_key}"}
    runs = await client.get(f"/v1/jobs/{job_id}/runs", headers=reader)
    history = await client.get(f"/v1/jobs/{job_id}/history", headers=reader)
    for response in (runs, history):
        assert response.status_code == 200
        assert ACCOUNT not in response.text, response.text
        assert "AccessDenied" in response.text and "role/headwater-loader" in response.text
