"""Hostile replay jobs (issue #13): bounded selections, prompt cancel, no scratch left, no forged events for ingest."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from argon2 import PasswordHasher

from services.replay.app import create_app
from services.replay.pump import run_replay
from services.replay.settings import ReplaySettings
from services.replay.wiring import open_replay
from shared.auth import ApiKey
from shared.db import create_engine, session_factory
from shared.openapi import RULES_EXTENSION
from tests.helpers import wait_until
from tests.replay.conftest import make_event, put_archive, read_stream

SLOW_WHERE = "(SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3) > 0"


@pytest.fixture
async def settings(settings: ReplaySettings) -> ReplaySettings:
    """The replay test settings with small job limits."""
    return settings.model_copy(update={"job_max_rows": 50, "job_selection_timeout_s": 4.0})


async def _state(client: httpx.AsyncClient, job_id: str) -> dict:
    return (await client.get(f"/v1/replays/{job_id}")).json()


async def _until_state(client: httpx.AsyncClient, job_id: str, *states: str, timeout: float = 20) -> dict:
    async def probe() -> dict | None:
        job = await _state(client, job_id)
        return job if job["state"] in states else None

    return await wait_until(probe, timeout=timeout, message=f"job never reached {states}")


async def test_cancel_is_effective_within_a_second_while_the_selection_is_built(client, aws, settings, run_worker):
    await put_archive(await aws.get("s3"), settings.bucket("raw"), [make_event("a1", "2026-11-24T10:00:00Z")])
    job_id = (await client.post("/v1/replays", json={"selection": {"where": SLOW_WHERE}})).json()["id"]
    worker = asyncio.create_task(run_worker())
    await _until_state(client, job_id, "running")
    await asyncio.sleep(0.3)  # let DuckDB get busy: this is the phase under test, not a synchronisation
    asked = time.monotonic()
    assert (await client.post(f"/v1/replays/{job_id}/cancel")).status_code == 202
    job = await _until_state(client, job_id, "cancelled", "failed", timeout=10)
    assert job["state"] == "cancelled"
    assert time.monotonic() - asked < 1.5
    await asyncio.wait_for(worker, 10)
    assert not (settings.jobs_dir / job_id).exists()


async def test_cancel_is_effective_within_a_second_while_paced(client, aws, settings, run_worker):
    events = [make_event(f"p{n:02d}", f"2026-11-24T10:00:{n:02d}Z") for n in range(10)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    job_id = (await client.post("/v1/replays", json={"selection": {}, "rate_limit": 0.2})).json()["id"]
    worker = asyncio.create_task(run_worker())

    async def emitted_one() -> bool:
        return (await _state(client, job_id))["progress"]["emitted"] >= 1

    await wait_until(emitted_one, timeout=20, message="job never emitted")
    asked = time.monotonic()
    assert (await client.post(f"/v1/replays/{job_id}/cancel")).status_code == 202
    job = await _until_state(client, job_id, "cancelled", timeout=10)
    assert time.monotonic() - asked < 1.5
    await asyncio.wait_for(worker, 10)
    on_stream = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert len(on_stream) == job["summary"]["emitted"] < 10


async def test_a_finished_job_leaves_no_scratch_files(client, aws, settings, run_worker):
    await put_archive(await aws.get("s3"), settings.bucket("raw"), [make_event("a1", "2026-11-24T10:00:00Z")])
    done = (await client.post("/v1/replays", json={"selection": {}})).json()["id"]
    refused = (await client.post("/v1/replays", json={"selection": {"where": "no_such_column = 1"}})).json()["id"]
    await run_worker()
    assert (await _state(client, done))["state"] == "succeeded"
    assert (await _state(client, refused))["state"] == "failed"
    assert not (settings.jobs_dir / done).exists()
    assert not (settings.jobs_dir / refused).exists()


async def test_a_selection_has_a_row_cap_and_a_time_limit(client, aws, settings, run_worker):
    events = [make_event(f"r{n:02d}", f"2026-11-24T10:00:{n % 60:02d}Z", ad_id=f"ad-{n}") for n in range(60)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    too_many = (await client.post("/v1/replays", json={"selection": {}})).json()["id"]
    fits = (await client.post("/v1/replays", json={"selection": {}, "compact": True, "key": "'one'"})).json()["id"]
    slow = (await client.post("/v1/replays", json={"selection": {"where": SLOW_WHERE}})).json()["id"]
    started = time.monotonic()
    await run_worker()
    assert time.monotonic() - started < 30
    job = await _state(client, too_many)
    assert (job["state"], job["progress"]["emitted"]) == ("failed", 0)
    assert "more than 50 rows" in job["error"]
    assert (await _state(client, fits))["state"] == "succeeded"
    job = await _state(client, slow)
    assert job["state"] == "failed"
    assert "time limit of 4s" in job["error"]


async def test_a_selection_window_is_bounded(client) -> None:
    wide = {"selection": {"start": "2001-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}
    for path in ("/v1/replays", "/v1/replays/preview"):
        response = await client.post(path, json=wide)
        assert response.status_code == 422, response.text
        assert "wider than 92 days" in response.text
        empty = await client.post(path, json={"selection": {"start": "0001-01-01", "end": "0001-01-01"}})
        assert empty.status_code == 422, empty.text


async def test_target_streams_come_from_an_allow_list(client, settings) -> None:
    for stream in (settings.stream("events"), "events", "some-other-stream"):
        response = await client.post("/v1/replays", json={"selection": {}, "target_stream": stream})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"] == [{"field": "target_stream", "reason": "not_allowed"}]
    for stream in ("replay", settings.stream("replay")):
        response = await client.post("/v1/replays", json={"selection": {}, "target_stream": stream})
        assert response.status_code == 202, response.text
        assert response.json()["target_stream"] == settings.stream("replay")


def test_the_spec_declares_the_rules_behind_these_refusals() -> None:
    """The 422s above (stream not allowed, empty or too wide window) and the 400 for a query that does not run answer
    schema-valid requests: the spec lists them on the status (#13: schemathesis accepts exactly those)."""
    paths = create_app(ReplaySettings()).openapi()["paths"]
    for path in ("/v1/replays", "/v1/replays/preview"):
        responses = paths[path]["post"]["responses"]
        rules = " ".join(responses["422"][RULES_EXTENSION])
        assert "target_stream" in rules and "`end` after `start`" in rules and "query_max_window_days" in rules
        assert "SELECT" in " ".join(responses["400"][RULES_EXTENSION])
        assert "target_stream" in responses["422"]["description"]


async def test_the_query_form_needs_its_own_scope(settings) -> None:
    key = f"hw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
    row = ApiKey(key_id=key.split("_")[1], scopes="read replay:run", key_hash=PasswordHasher().hash(key))
    engine = create_engine(settings)
    async with session_factory(engine)() as session:
        session.add(row)
        await session.commit()
    await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://replay", headers=headers) as client:
            for path in ("/v1/replays", "/v1/replays/preview"):
                refused = await client.post(path, json={"query": "SELECT 'forged' AS event_id"})
                assert refused.status_code == 403, refused.text
                assert "replay:query" in refused.json()["error"]["message"]
            assert (await client.post("/v1/replays", json={"selection": {}})).status_code == 202


async def test_records_replayed_into_ingests_stream_must_be_valid_raw_records(client, aws, settings, redis) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), [make_event("ok-1", "2026-11-24T10:00:00Z")])
    opened = settings.model_copy(update={"replay_target_streams": ["replay", "events"]})
    forged = (
        "SELECT * EXCLUDE (record, sequence_number, origin, dt, hour) FROM raw_events UNION ALL BY NAME "
        "SELECT 'bad id!' AS event_id, 'click' AS type, 'beacon' AS source, '{}'::JSON AS properties, "
        "TIMESTAMP '2026-11-24 10:00:01' AS event_time, TIMESTAMP '2026-11-24 10:00:01' AS received_at "
        "UNION ALL BY NAME SELECT 'no-type' AS event_id, '{}'::JSON AS properties"
    )
    app = create_app(opened)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://replay", headers=client.headers) as http:
            created = await http.post("/v1/replays", json={"query": forged, "target_stream": "events"})
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
    wiring = await open_replay(opened, job_queue=False)
    try:
        state = await run_replay(
            job_id=job_id, settings=opened, aws=wiring.aws, store=wiring.progress, sessions=wiring.sessions
        )
    finally:
        await wiring.close()
    assert state == "succeeded"
    job = await _state(client, job_id)
    assert (job["summary"]["emitted"], job["summary"]["failed"]) == (1, 2)
    assert job["summary"]["errors"] == {"InvalidRecord": 2}
    records = await read_stream(await aws.get("kinesis"), settings.stream("events"))
    assert [r["data"]["event_id"] for r in records] == ["ok-1"]
    assert records[0]["data"]["_replay"]["job_id"] == job_id
