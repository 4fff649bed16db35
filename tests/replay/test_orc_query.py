"""Curated ORC partitions are queryable like Parquet ones: replay's mirror rewrites each ORC part as Parquet
beside it, so a table whose days are ORC, Parquet or both reads as one."""

from __future__ import annotations

import datetime as dt
import io

import orjson
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

UTC_US = pa.timestamp("us", tz="UTC")


def _events(ids: list[str], day: dt.date) -> pa.Table:
    stamps = [dt.datetime(day.year, day.month, day.day, 10, i, tzinfo=dt.UTC) for i in range(len(ids))]
    return pa.table(
        {"event_id": ids, "event_type": ["click"] * len(ids), "event_time": pa.array(stamps, UTC_US)}
    )  # dt is in the path only, as transform writes parts


def _orc(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    orc.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


async def _rows(client, sql: str) -> list[dict]:
    response = await client.post("/v1/query", json={"sql": sql})
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.text.splitlines()]


async def test_orc_and_parquet_days_of_a_table_read_as_one(client, aws, settings) -> None:
    s3 = await aws.get("s3")
    bucket = settings.bucket("curated")
    d1, d2 = dt.date(2026, 11, 24), dt.date(2026, 11, 25)
    await s3.put_object(Bucket=bucket, Key=f"ad_events/v1/dt={d1}/part-00000.orc", Body=_orc(_events(["a", "b"], d1)))
    await s3.put_object(
        Bucket=bucket, Key=f"ad_events/v1/dt={d2}/part-00000.parquet", Body=_parquet(_events(["c"], d2))
    )
    sql = "SELECT event_id, CAST(dt AS VARCHAR) AS dt, CAST(event_time AS VARCHAR) AS t FROM ad_events ORDER BY 1"
    assert await _rows(client, sql) == [
        {"event_id": "a", "dt": "2026-11-24", "t": "2026-11-24 10:00:00+00"},
        {"event_id": "b", "dt": "2026-11-24", "t": "2026-11-24 10:01:00+00"},
        {"event_id": "c", "dt": "2026-11-25", "t": "2026-11-25 10:00:00+00"},
    ]

    # the day is transformed again (new ORC part): the next query reads the new rows, not the old rewrite
    await s3.put_object(
        Bucket=bucket, Key=f"ad_events/v1/dt={d1}/part-00000.orc", Body=_orc(_events(["x", "y", "z"], d1))
    )
    rows = await _rows(client, "SELECT event_id FROM ad_events WHERE dt = DATE '2026-11-24' ORDER BY 1")
    assert [r["event_id"] for r in rows] == ["x", "y", "z"]
