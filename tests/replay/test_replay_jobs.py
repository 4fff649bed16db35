"""Replay jobs: compaction, filters, preview, dry run, rate limit, cancel, crash and resume, partial failures."""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
from arq import create_pool

from services.replay.jobs import recover_orphans
from services.replay.progress import ProgressStore
from services.replay.pump import run_replay
from shared.db import create_engine, session_factory
from shared.redis import arq_redis_settings
from tests.helpers import wait_until
from tests.replay.conftest import make_event, put_archive, read_stream


def _history() -> list[dict]:
    """Three ads with several versions each, across two days, plus clicks and a meter read."""
    events = []
    for n in range(12):
        ad = f"ad-{n % 3}"
        events.append(make_event(f"imp-{n:02d}", f"2026-11-24T{n:02d}:10:00Z", ad_id=ad, properties={"v": n}))
    events.append(make_event("clk-1", "2026-11-24T05:30:00Z", type="click", ad_id="ad-1"))
    events.append(make_event("clk-2", "2026-11-25T01:00:00Z", type="click", ad_id="ad-2"))
    events.append(make_event("m-1", "2026-11-24T03:00:00Z", type="meter_read", ad_id=None, cloud_id="0042"))
    return events


async def _replay(client, run_worker, body: dict) -> dict:
    created = await client.post("/v1/replays", json=body)
    assert created.status_code == 202, created.text
    await run_worker()
    job = (await client.get(f"/v1/replays/{created.json()['id']}")).json()
    assert job["state"] == "succeeded", job
    return job


async def test_compaction_keeps_exactly_the_last_record_per_key(client, aws, settings, run_worker) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    job = await _replay(
        client, run_worker, {"selection": {"event_types": ["impression"]}, "compact": True, "key": "ad_id"}
    )
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert sorted((r["key"], r["data"]["event_id"]) for r in records) == [
        ("ad-0", "imp-09"),
        ("ad-1", "imp-10"),
        ("ad-2", "imp-11"),
    ]
    assert job["summary"]["compacted"] is True
    assert job["progress"]["total"] == 3


async def test_bounded_filtered_replay_emits_exactly_the_selection_in_order(client, aws, settings, run_worker) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    body = {
        "selection": {
            "start": "2026-11-24T02:00:00Z",
            "end": "2026-11-24T08:00:00Z",
            "event_types": ["impression", "click"],
            "ad_ids": ["ad-1", "ad-2"],
            "where": "coalesce(CAST(properties->>'v' AS INTEGER), 0) != 4",
        },
        "key": "ad_id",
    }
    await _replay(client, run_worker, body)
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    # Single-shard target: the stream order is the emission order (event time).
    assert [r["data"]["event_id"] for r in records] == ["imp-02", "imp-05", "clk-1", "imp-07"]
    assert {r["key"] for r in records} == {"ad-1", "ad-2"}


async def test_preview_equals_the_first_records_of_the_real_run(client, aws, settings, run_worker) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    body = {"selection": {"sources": ["beacon"]}, "annotate": {"force_overwrite": True, "reason": "rebuild"}}
    preview = await client.post("/v1/replays/preview", json={**body, "limit": 5})
    assert preview.status_code == 200, preview.text
    assert preview.json()["count"] == 5
    await _replay(client, run_worker, body)
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))

    def _stable(key: str, data: dict) -> tuple:
        replay = {k: v for k, v in data["_replay"].items() if k not in ("job_id", "replayed_at")}
        return key, {**data, "_replay": replay}

    expected = [_stable(r["key"], r["data"]) for r in records[:5]]
    assert [_stable(p["partition_key"], p["data"]) for p in preview.json()["records"]] == expected
    assert expected[0][1]["_replay"] == {
        "force_overwrite": True,
        "reason": "rebuild",
        "original_sequence": None,
        "original_timestamp": "2026-11-24T00:10:00Z",
        "partition_key": "ad-0",
        "partition_key_from": "original",
    }


async def test_replay_keeps_the_original_partition_key_or_the_chosen_one_and_says_which(
    client, aws, settings, run_worker
) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    await _replay(client, run_worker, {"selection": {"sources": ["beacon", "meter_read"]}, "key": "original"})
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert len(records) == 15
    for record in records:
        data = record["data"]
        original = data["cloud_id"] if data["type"] == "meter_read" else data["ad_id"]  # the entity, as ingest keys it
        assert record["key"] == original
        assert (data["_replay"]["partition_key"], data["_replay"]["partition_key_from"]) == (original, "original")
    preview = await client.post(
        "/v1/replays/preview", json={"selection": {"sources": ["meter_read"]}, "key": "event_id", "limit": 1}
    )
    [chosen] = preview.json()["records"]
    assert chosen["partition_key"] == "m-1"  # a key expression, event_id, chosen
    assert chosen["data"]["_replay"]["partition_key_from"] == "chosen"


async def test_dry_run_counts_without_emitting(client, aws, settings, run_worker) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    job = await _replay(client, run_worker, {"selection": {"sources": ["meter_read"]}, "dry_run": True})
    assert job["summary"]["would_emit"] == 1
    assert job["progress"]["emitted"] == 0
    assert await read_stream(await aws.get("kinesis"), settings.stream("replay")) == []


async def test_rate_limit_is_honoured_within_ten_percent(client, aws, settings, run_worker) -> None:
    events = [make_event(f"r{n:03d}", f"2026-11-24T10:{n // 60:02d}:{n % 60:02d}Z") for n in range(75)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    job = await _replay(client, run_worker, {"selection": {}, "rate_limit": 25})
    summary = job["summary"]
    assert summary["emitted"] == 75
    started = datetime.fromisoformat(summary["emit_started_at"])
    finished = datetime.fromisoformat(summary["emit_finished_at"])
    achieved = 75 / (finished - started).total_seconds()
    assert 22.5 <= achieved <= 27.5, achieved


async def test_cancel_stops_a_running_job(client, aws, settings, run_worker) -> None:
    events = [make_event(f"c{n:03d}", f"2026-11-24T10:00:{n % 60:02d}Z") for n in range(200)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    job_id = (await client.post("/v1/replays", json={"selection": {}, "rate_limit": 50})).json()["id"]
    worker = asyncio.create_task(run_worker())

    async def _emitting() -> bool:
        return (await client.get(f"/v1/replays/{job_id}")).json()["progress"]["emitted"] >= 10

    await wait_until(_emitting, timeout=20, message="job never started emitting")
    cancelled = await client.post(f"/v1/replays/{job_id}/cancel")
    assert cancelled.status_code == 202
    await asyncio.wait_for(worker, 30)
    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "cancelled"
    emitted = job["summary"]["emitted"]
    assert 10 <= emitted < 200
    assert len(await read_stream(await aws.get("kinesis"), settings.stream("replay"))) == emitted
    again = await client.post(f"/v1/replays/{job_id}/cancel")
    assert again.status_code == 409


async def test_a_crashed_job_resumes_without_re_emitting_beyond_one_batch(
    client, aws, settings, redis, run_worker
) -> None:
    events = [make_event(f"k{n:03d}", f"2026-11-24T11:{n // 60:02d}:{n % 60:02d}Z") for n in range(150)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    job_id = (await client.post("/v1/replays", json={"selection": {}, "rate_limit": 100})).json()["id"]
    engine = create_engine(settings)
    sessions = session_factory(engine)
    store = ProgressStore(redis, settings.resource_prefix)
    arq = await create_pool(arq_redis_settings(settings))

    def _run() -> asyncio.Task:
        return asyncio.create_task(
            run_replay(job_id=job_id, settings=settings, aws=aws, store=store, sessions=sessions)
        )

    first = _run()

    async def _halfway() -> bool:
        return (await store.read(job_id)).get("emitted", 0) >= 40

    await wait_until(_halfway, timeout=20, message="job never got halfway")
    # While it runs, nobody else may run it and recovery leaves it alone.
    assert await _run() == "busy"
    async with sessions() as session:
        assert await recover_orphans(session=session, store=store, arq=arq, settings=settings) == []
    first.cancel()  # the worker dies mid-job: the state stays "running"
    await asyncio.gather(first, return_exceptions=True)
    assert (await client.get(f"/v1/replays/{job_id}")).json()["state"] == "running"

    async with sessions() as session:
        assert await recover_orphans(session=session, store=store, arq=arq, settings=settings) == [job_id]
    await run_worker()
    await arq.aclose()
    await engine.dispose()
    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "succeeded"
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    ids = [r["data"]["event_id"] for r in records]
    assert set(ids) == {e["event_id"] for e in events}
    batch = 10  # rate 100/s -> batches of 10
    assert len(ids) - len(set(ids)) <= batch
    assert job["summary"]["resumed_from"] >= 40
    assert job["progress"]["emitted"] >= 150


async def test_unknown_job_is_a_404(client) -> None:
    response = await client.get("/v1/replays/rpl_nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_list_shows_every_job_newest_first(client, aws, settings) -> None:
    first = (await client.post("/v1/replays", json={"selection": {}, "dry_run": True})).json()["id"]
    second = (await client.post("/v1/replays", json={"query": "SELECT * FROM raw_events"})).json()["id"]
    listed = (await client.get("/v1/replays")).json()["jobs"]
    assert [j["id"] for j in listed] == [second, first]


async def test_a_request_that_is_not_one_select_is_refused_before_queueing(client) -> None:
    for body in (
        {"query": "SELECT * FROM raw_events; DROP TABLE x"},
        {"selection": {"where": "true; DELETE FROM raw_events"}},
        {"query": "INSERT INTO t VALUES (1)"},
    ):
        response = await client.post("/v1/replays", json=body)
        assert response.status_code == 400, (body, response.text)
    assert (await client.get("/v1/replays")).json()["jobs"] == []


async def test_a_selection_that_does_not_bind_fails_the_job_with_the_reason(client, run_worker) -> None:
    job_id = (await client.post("/v1/replays", json={"query": "SELECT nope FROM raw_events"})).json()["id"]
    await run_worker()
    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "failed"
    assert "nope" in job["error"]


async def test_compaction_of_live_records_with_equal_times_keeps_the_highest_sequence(
    client, aws, settings, run_worker
) -> None:
    kinesis = await aws.get("kinesis")
    for n in range(3):  # same key, same event time: only the stream sequence tells them apart
        event = make_event(f"same-{n}", "2026-11-24T10:00:00Z", ad_id="ad-x", properties={"n": n})
        await kinesis.put_record(StreamName=settings.stream("events"), Data=orjson.dumps(event), PartitionKey="ad-x")
    await _replay(client, run_worker, {"selection": {"view": "live_events"}, "compact": True, "key": "ad_id"})
    records = await read_stream(kinesis, settings.stream("replay"))
    assert [r["data"]["event_id"] for r in records] == ["same-2"]
    assert records[0]["data"]["_replay"]["original_sequence"].isdigit()


async def test_a_projected_query_emits_its_rows_as_json_keyed_by_an_expression(
    client, aws, settings, run_worker
) -> None:
    await put_archive(await aws.get("s3"), settings.bucket("raw"), _history())
    body = {
        "query": "SELECT ad_id, type, count(*) AS n, max(event_time) AS event_time FROM raw_events "
        "WHERE source = 'beacon' GROUP BY ALL",
        "key": "ad_id || ':' || type",
    }
    await _replay(client, run_worker, body)
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    got = {r["key"]: {k: v for k, v in r["data"].items() if k != "_replay"} for r in records}
    assert got["ad-1:impression"] == {
        "ad_id": "ad-1",
        "type": "impression",
        "n": 4,
        "event_time": "2026-11-24 10:10:00",
    }
    assert got["ad-2:click"]["n"] == 1
    assert len(got) == 5
    assert all(r["data"]["_replay"]["original_timestamp"] == r["data"]["event_time"] for r in records)
