"""Hostile archive SQL (issue #13): bounded memory, spill, concurrency, bytes, window and sources; cuts are said."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest
import uvicorn

import services.replay.archive as archive
from services.replay.app import create_app
from services.replay.settings import ReplaySettings
from shared.openapi import RULES_EXTENSION
from tests.helpers import free_port, wait_until
from tests.replay.conftest import make_event, put_archive

SLOW_AGGREGATE = "SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3"


@asynccontextmanager
async def replay_app(settings: ReplaySettings, api_key: str, **overrides: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Yield (app, client) over ASGI for ``settings`` with ``overrides``."""
    app = create_app(settings.model_copy(update=overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://replay", headers=headers) as http:
            yield app, http


@asynccontextmanager
async def served(settings: ReplaySettings, **overrides: Any) -> AsyncIterator[tuple[Any, str]]:
    """Yield (app, url) served by uvicorn (a real socket, so a client can go away)."""
    app = create_app(settings.model_copy(update=overrides))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: asyncio.sleep(0, server.started), timeout=10, message="uvicorn did not start")
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def _lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines()]


async def test_each_query_gets_its_own_small_memory_and_spill_limits(settings, api_key) -> None:
    async with replay_app(settings, api_key, query_memory_limit="64MB", query_max_temp_size="100MB") as (_, client):
        response = await client.post(
            "/v1/query",
            json={
                "sql": "SELECT current_setting('memory_limit') AS memory, "
                "current_setting('max_temp_directory_size') AS spill, current_setting('temp_directory') AS temp"
            },
        )
    assert response.status_code == 200, response.text
    [row] = _lines(response.text)
    assert row["memory"] == "61.0 MiB"
    assert row["spill"] == "95.3 MiB"
    assert row["temp"].startswith(str(settings.temp_dir))
    # The query's spill folder is gone with it.
    assert not any(settings.temp_dir.iterdir())


async def test_a_full_house_of_queries_is_a_429_with_retry_after(settings, api_key) -> None:
    async with replay_app(settings, api_key, query_max_concurrent=1) as (app, client):
        slow = asyncio.create_task(client.post("/v1/query", json={"sql": SLOW_AGGREGATE, "timeout_s": 3}))
        slots = app.state.wiring.query_slots
        await wait_until(lambda: asyncio.sleep(0, slots.in_use == 1), timeout=10, message="query did not start")
        refused = await client.post("/v1/query", json={"sql": "SELECT 1 AS one"})
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "rate_limited"
        assert (await slow).status_code == 400  # its time limit
        assert slots.in_use == 0
        assert (await client.post("/v1/query", json={"sql": "SELECT 1 AS one"})).status_code == 200


async def test_a_client_that_goes_away_stops_its_query(settings, api_key) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    async with served(settings, query_max_response_bytes=10**10, query_max_rows=10**10) as (app, url):
        slots = app.state.wiring.query_slots
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            # Gone while streaming: the rows would go on for a minute.
            body = {"sql": "SELECT i, repeat('x', 200) AS pad FROM range(100000000000) t(i)", "timeout_s": 60}
            async with http.stream("POST", "/v1/query", json=body) as response:
                assert response.status_code == 200
                async for _ in response.aiter_bytes():
                    break
            started = time.monotonic()
            await wait_until(lambda: asyncio.sleep(0, slots.in_use == 0), timeout=5, message="query still running")
            assert time.monotonic() - started < 3
            # Gone before the first row: the aggregate would run for a minute.
            sending = asyncio.create_task(http.post("/v1/query", json={"sql": SLOW_AGGREGATE, "timeout_s": 60}))
            await wait_until(lambda: asyncio.sleep(0, slots.in_use == 1), timeout=10, message="query did not start")
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            await wait_until(lambda: asyncio.sleep(0, slots.in_use == 0), timeout=5, message="query still running")


async def test_the_answer_has_a_byte_cap_and_says_it_was_cut(settings, api_key) -> None:
    async with replay_app(settings, api_key, query_max_response_bytes=25_000_000) as (_, client):
        response = await client.post("/v1/query", json={"sql": "SELECT repeat('x', 10000000) AS s FROM range(20)"})
    assert response.status_code == 200
    assert len(response.content) < 25_000_200
    *rows, last = _lines(response.text)
    assert len(rows) == 2
    assert last == {"_truncated": True, "reason": "max_bytes", "rows": 2}


async def test_hitting_max_rows_is_said_in_a_last_line_a_header_and_arrow_metadata(client, aws, settings) -> None:
    events = [make_event(f"e{n:02d}", "2026-11-24T10:00:00Z") for n in range(20)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    sql = "SELECT event_id FROM raw_events ORDER BY event_id"
    cut = await client.post("/v1/query", json={"sql": sql, "max_rows": 5})
    assert cut.headers["X-Result-Truncated"] == "max_rows"
    assert _lines(cut.text)[-1] == {"_truncated": True, "reason": "max_rows", "rows": 5}
    exact = await client.post("/v1/query", json={"sql": sql, "max_rows": 20})
    assert "X-Result-Truncated" not in exact.headers
    assert len(_lines(exact.text)) == 20
    assert "_truncated" not in _lines(exact.text)[-1]

    arrow = await client.post("/v1/query", json={"sql": sql, "max_rows": 5, "format": "arrow"})
    reader = pa.ipc.open_stream(io.BytesIO(arrow.content))
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch_with_custom_metadata())
        except StopIteration:
            break
    assert sum(batch.num_rows for batch, _ in batches) == 5
    last_batch, metadata = batches[-1]
    assert last_batch.num_rows == 0
    assert dict(metadata) == {b"truncated": b"max_rows", b"rows": b"5"}


async def test_a_time_out_while_streaming_is_said_and_before_any_row_is_a_400(settings, api_key) -> None:
    overrides = {"query_max_response_bytes": 10**10, "query_max_rows": 10**12}
    headers = {"Authorization": f"Bearer {api_key}"}
    async with served(settings, **overrides) as (_, url):
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
            # A slow reader: the rows would go on for hours, the answer is cut at the time limit and says so.
            body = {"sql": "SELECT i FROM range(1000000000000) t(i)", "timeout_s": 2}
            received = bytearray()
            async with http.stream("POST", "/v1/query", json=body) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_bytes():
                    received += chunk
                    await asyncio.sleep(0.05)  # reading slowly is the behaviour under test
            *rows, last = _lines(received.decode())
            assert rows and last == {"_truncated": True, "reason": "timeout", "rows": len(rows)}
            # Nothing was sent yet: a status says it (400, as before: the request's own timeout_s was too short).
            early = await http.post("/v1/query", json={"sql": SLOW_AGGREGATE, "timeout_s": 0.3})
            assert early.status_code == 400
            assert "time limit" in early.json()["error"]["message"]


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"start": "0001-01-01", "end": "0001-01-01"}, "end must be after start"),
        ({"start": "2026-11-25T00:00:00Z", "end": "2026-11-24T00:00:00Z"}, "end must be after start"),
        ({"start": "2001-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "wider than 92 days"),
    ],
)
async def test_an_empty_reversed_or_too_wide_window_is_a_422(client, window, reason) -> None:
    response = await client.post("/v1/query", json={"sql": "SELECT * FROM raw_events", **window})
    assert response.status_code == 422, response.text
    assert reason in response.text


def test_the_spec_declares_the_rules_behind_the_400_and_422() -> None:
    """Invalid SQL, a query out of time before its first row (400) and the window rules (422) refuse schema-valid
    requests: the spec lists them on those statuses (#13: schemathesis accepts exactly those, nothing else)."""
    responses = create_app(ReplaySettings()).openapi()["paths"]["/v1/query"]["post"]["responses"]
    bad_request = " ".join(responses["400"][RULES_EXTENSION])
    assert "SELECT" in bad_request and "timeout_s" in bad_request
    assert "`end` after `start`" in " ".join(responses["422"][RULES_EXTENSION])
    assert RULES_EXTENSION not in responses["429"]


async def test_a_wide_window_lists_the_archive_by_prefix_with_bounded_concurrency(
    settings, api_key, aws, monkeypatch
) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), [make_event("d1", "2026-11-24T05:00:00Z")])
    calls: list[str] = []
    at_once = {"now": 0, "max": 0}
    real_list_keys = archive.list_keys

    async def counting(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
        calls.append(prefix)
        assert len(calls) < 100, "one listing per calendar day"
        at_once["now"] += 1
        at_once["max"] = max(at_once["max"], at_once["now"])
        try:
            return await real_list_keys(s3, bucket, prefix)
        finally:
            at_once["now"] -= 1

    monkeypatch.setattr(archive, "list_keys", counting)
    window = {"start": "2001-01-01T00:00:00Z", "end": "2026-12-31T00:00:00Z", "sources": ["beacon", "meter_read"]}
    async with replay_app(settings, api_key, query_max_window_days=20_000, listing_concurrency=2) as (_, client):
        started = time.monotonic()
        response = await client.post("/v1/query", json={"sql": "SELECT event_id FROM raw_events", **window})
    assert response.status_code == 200, response.text
    assert _lines(response.text) == [{"event_id": "d1"}]
    assert calls == ["beacon/dt=2026-11-24/"]
    assert time.monotonic() - started < 10


async def test_listing_the_archive_counts_inside_the_time_limit(settings, api_key, monkeypatch) -> None:
    async def slow_listing(*_: Any, **__: Any) -> list[str]:
        await asyncio.sleep(60)
        return []

    monkeypatch.setattr(archive, "list_top_level", slow_listing)
    async with replay_app(settings, api_key) as (_, client):
        started = time.monotonic()
        response = await client.post("/v1/query", json={"sql": "SELECT * FROM raw_events", "timeout_s": 0.5})
    assert response.status_code == 400, response.text
    assert "time limit" in response.json()["error"]["message"]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("sources", [["/etc"], ["../../.."], ["beacon/../x"], ["Beacon"], [""]])
async def test_sources_are_names_not_paths(client, sources: list[str]) -> None:
    response = await client.post("/v1/query", json={"sql": "SELECT * FROM raw_events", "sources": sources})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    for path in ("/v1/replays", "/v1/replays/preview"):
        refused = await client.post(path, json={"selection": {"sources": sources}})
        assert refused.status_code == 422, refused.text
