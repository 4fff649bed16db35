"""Archive SQL over the archive, the live tail and curated Parquet: exact results, de-duplication, limits."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tests.replay.conftest import make_event, put_archive


async def _put_live(aws, settings, events: list[dict]) -> None:
    kinesis = await aws.get("kinesis")
    await kinesis.put_records(
        StreamName=settings.stream("events"),
        Records=[{"Data": orjson.dumps(e), "PartitionKey": e["event_id"]} for e in events],
    )


async def _rows(client, sql: str, **extra) -> list[dict]:
    response = await client.post("/v1/query", json={"sql": sql, **extra})
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.text.splitlines()]


async def test_all_events_unifies_archive_and_live_and_the_archived_copy_wins(client, aws, settings) -> None:
    archived = [make_event("a1", "2026-11-24T10:00:00Z"), make_event("shared", "2026-11-24T10:05:00Z", ad_id="old")]
    live = [make_event("shared", "2026-11-24T10:05:00Z", ad_id="live-copy"), make_event("l1", "2026-11-24T11:00:00Z")]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), archived)
    await _put_live(aws, settings, live)

    live_rows = await _rows(client, "SELECT event_id, origin FROM live_events ORDER BY event_id")
    assert live_rows == [{"event_id": "l1", "origin": "live"}, {"event_id": "shared", "origin": "live"}]
    rows = await _rows(client, "SELECT event_id, ad_id, origin FROM all_events ORDER BY event_id")
    assert rows == [
        {"event_id": "a1", "ad_id": "ad-1", "origin": "archive"},
        {"event_id": "l1", "ad_id": "ad-1", "origin": "live"},
        {"event_id": "shared", "ad_id": "old", "origin": "archive"},
    ]
    seq = await _rows(client, "SELECT sequence_number FROM live_events WHERE event_id = 'l1'")
    assert seq[0]["sequence_number"].isdigit()


async def test_aggregates_over_the_archive_are_exact(client, aws, settings) -> None:
    events = [make_event(f"i{n}", f"2026-11-24T{n % 24:02d}:00:00Z") for n in range(30)]
    events += [make_event(f"c{n}", "2026-11-25T01:00:00Z", type="click") for n in range(7)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    rows = await _rows(client, "SELECT dt, type, count(*) AS n FROM raw_events GROUP BY ALL ORDER BY ALL")
    assert rows == [
        {"dt": "2026-11-24", "type": "impression", "n": 30},
        {"dt": "2026-11-25", "type": "click", "n": 7},
    ]


async def test_time_hints_mirror_only_the_touched_partitions(client, aws, settings) -> None:
    events = [make_event("d1", "2026-11-20T05:00:00Z"), make_event("d2", "2026-11-24T05:00:00Z")]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    rows = await _rows(
        client, "SELECT event_id FROM raw_events", start="2026-11-24T05:00:00Z", end="2026-11-24T06:00:00Z"
    )
    assert rows == [{"event_id": "d2"}]
    mirrored = sorted(p.name for p in (settings.cache_dir / settings.bucket("raw")).rglob("*.json.gz"))
    assert len(mirrored) == 1


async def test_hints_limit_the_view_even_when_more_is_mirrored(client, aws, settings) -> None:
    events = [make_event("d1", "2026-11-20T05:00:00Z"), make_event("d2", "2026-11-24T05:00:00Z")]
    events.append(make_event("m1", "2026-11-24T05:30:00Z", type="meter_read"))
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    assert len(await _rows(client, "SELECT event_id FROM raw_events")) == 3  # mirrors everything
    hinted = await _rows(
        client,
        "SELECT event_id FROM raw_events ORDER BY 1",
        sources=["beacon"],
        start="2026-11-24T05:00:00Z",
        end="2026-11-24T06:00:00Z",
    )
    assert hinted == [{"event_id": "d2"}]


async def test_row_limit_and_arrow_format(client, aws, settings) -> None:
    events = [make_event(f"e{n:02d}", "2026-11-24T10:00:00Z") for n in range(20)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    rows = await _rows(client, "SELECT event_id FROM raw_events ORDER BY event_id", max_rows=5)
    # The cut is said in a last line (issue #13).
    assert [r["event_id"] for r in rows[:-1]] == ["e00", "e01", "e02", "e03", "e04"]
    assert rows[-1] == {"_truncated": True, "reason": "max_rows", "rows": 5}
    response = await client.post(
        "/v1/query", json={"sql": "SELECT event_id, event_time FROM raw_events ORDER BY 1", "format": "arrow"}
    )
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(io.BytesIO(response.content)).read_all()
    assert table.num_rows == 20
    assert table.column("event_time")[0].as_py() == dt.datetime(2026, 11, 24, 10, 0)


async def test_curated_parquet_tables_are_queryable_by_name(client, aws, settings) -> None:
    table = pa.table({"event_id": ["x", "y"], "event_type": ["click", "impression"], "dt": [dt.date(2026, 11, 24)] * 2})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s3 = await aws.get("s3")
    await s3.put_object(
        Bucket=settings.bucket("curated"), Key="ad_events/v1/dt=2026-11-24/part-00000.parquet", Body=buf.getvalue()
    )
    rows = await _rows(client, "SELECT event_type, count(*) AS n FROM ad_events GROUP BY 1 ORDER BY 1")
    assert rows == [{"event_type": "click", "n": 1}, {"event_type": "impression", "n": 1}]


async def test_unknown_columns_are_a_400_not_a_500(client) -> None:
    response = await client.post("/v1/query", json={"sql": "SELECT no_such_column FROM raw_events"})
    assert response.status_code == 400
    assert "no_such_column" in response.json()["error"]["message"]


async def test_lines_that_are_not_json_objects_are_skipped(client, aws, settings) -> None:
    import gzip

    body = gzip.compress(
        b'{"event_id": "ok", "type": "click", "event_time": "2026-11-24T10:00:00Z"}\nnot json\n[1, 2]\n'
    )
    s3 = await aws.get("s3")
    await s3.put_object(Bucket=settings.bucket("raw"), Key="beacon/dt=2026-11-24/hour=10/x.json.gz", Body=body)
    rows = await _rows(client, "SELECT event_id, record FROM raw_events")
    assert rows == [
        {"event_id": "ok", "record": '{"event_id": "ok", "type": "click", "event_time": "2026-11-24T10:00:00Z"}'}
    ]


async def test_a_query_over_its_time_limit_is_stopped(client) -> None:
    response = await client.post(
        "/v1/query", json={"sql": "SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3", "timeout_s": 0.3}
    )
    assert response.status_code == 400, response.text[:300]
    assert "time limit" in response.json()["error"]["message"]
