"""Walking skeleton: archive SQL, a structured replay through arq onto hw-replay, readiness."""

from __future__ import annotations

import orjson

from tests.replay.conftest import make_event, put_archive, read_stream


async def _archive(aws, settings) -> list[dict]:
    events = [
        make_event("e1", "2026-11-23T23:59:59Z"),
        make_event("e2", "2026-11-24T10:00:00Z", type="click"),
        make_event("e3", "2026-11-24T11:30:00Z"),
        make_event("m1", "2026-11-24T12:00:00Z", type="meter_read", cloud_id="007", demand_kw=1.5),
        make_event("e4", "2026-11-25T00:00:00Z"),
    ]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    return events


async def test_readyz_reports_every_dependency_ok(client) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert set(response.json()["checks"]) == {"redis", "database", "raw_bucket", "events_stream"}


async def test_query_returns_archived_events_as_json_lines(client, aws, settings) -> None:
    await _archive(aws, settings)
    response = await client.post(
        "/v1/query", json={"sql": "SELECT event_id, source, dt, hour, properties FROM raw_events ORDER BY event_id"}
    )
    assert response.status_code == 200, response.text
    rows = [orjson.loads(line) for line in response.text.splitlines()]
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3", "e4", "m1"]
    assert rows[1] == {"event_id": "e2", "source": "beacon", "dt": "2026-11-24", "hour": 10, "properties": {}}


async def test_query_refuses_anything_but_one_select(client) -> None:
    for sql in ("DELETE FROM raw_events", "SELECT 1; SELECT 2", "PRAGMA version", "COPY (SELECT 1) TO 'x.csv'"):
        response = await client.post("/v1/query", json={"sql": sql})
        assert response.status_code == 400, (sql, response.text)
        assert response.json()["error"]["code"] == "query_refused"


async def test_query_cannot_read_files_outside_the_archive(client) -> None:
    response = await client.post("/v1/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"})
    assert response.status_code == 400


async def test_structured_replay_emits_the_bounded_source_with_annotation(client, aws, settings, run_worker) -> None:
    await _archive(aws, settings)
    body = {
        "selection": {"sources": ["beacon"], "start": "2026-11-24T00:00:00Z", "end": "2026-11-25T00:00:00Z"},
        "annotate": {"force_overwrite": True},
    }
    created = await client.post("/v1/replays", json=body)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.json()["state"] == "queued"
    assert await run_worker() == 1

    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "succeeded", job
    assert job["progress"] == {
        "total": 2,
        "read": 2,
        "emitted": 2,
        "failed": 0,
        "percentage": 100.0,
        "rate": job["progress"]["rate"],
        "eta_s": 0.0,
    }
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert [r["data"]["event_id"] for r in records] == ["e2", "e3"]
    assert [r["key"] for r in records] == ["ad-1", "ad-1"]  # the default: each record's original key
    annotation = records[0]["data"]["_replay"]
    assert annotation["job_id"] == job_id
    assert annotation["force_overwrite"] is True
    assert annotation["original_timestamp"] == "2026-11-24T10:00:00Z"
    assert annotation["replayed_at"].endswith("Z")


async def test_query_form_replay_emits_the_query_rows(client, aws, settings, run_worker) -> None:
    await _archive(aws, settings)
    # Replay's own stream: ingest's events stream is no longer a target by default (issue #13).
    body = {"query": "SELECT * FROM raw_events WHERE type = 'meter_read'", "target_stream": settings.stream("replay")}
    job_id = (await client.post("/v1/replays", json=body)).json()["id"]
    await run_worker()
    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "succeeded"
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert [(r["data"]["event_id"], r["data"]["cloud_id"]) for r in records] == [("m1", "007")]


async def test_replay_routes_require_the_replay_scope(client) -> None:
    response = await client.post("/v1/replays", json={}, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_the_old_page_redirects_to_the_console(client) -> None:
    response = await client.get("/ui/")
    assert response.status_code == 308
    assert response.headers["location"].endswith("/query")


async def test_openapi_documents_every_replay_route_with_a_summary(client) -> None:
    spec = (await client.get("/openapi.json")).json()
    routes = {
        ("post", "/v1/query"),
        ("post", "/v1/replays"),
        ("post", "/v1/replays/preview"),
        ("get", "/v1/replays"),
        ("get", "/v1/replays/{replay_id}"),
        ("post", "/v1/replays/{replay_id}/cancel"),
    }
    for method, path in routes:
        assert spec["paths"][path][method]["summary"], (method, path)
    assert "examples" in spec["components"]["schemas"]["ReplayCreate"]
