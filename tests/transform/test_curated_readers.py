"""Curated files as outside readers see them: one published day read by pyarrow, DuckDB and Spark with their
default settings, in a non-UTC session time zone, gives the same rows and the same instants.

The day goes through the real path (raw objects in S3, the local engine, publish) and the curated bucket is then
mirrored to a local directory, key for key, which is what a reader pointed at the bucket sees.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from services.transform.builtin_schemas import AD_EVENTS_V1
from services.transform.local_partition import run_local_partition
from services.transform.settings import TransformSettings
from services.transform.storage import list_keys, sync_client
from shared.contracts import CuratedPartition
from shared.schemas import parse_schema_yaml
from tests.transform.sample import DT, beacon, good_beacons, jsonl, put_raw

SCHEMA = parse_schema_yaml(AD_EVENTS_V1)
DAY = date.fromisoformat(DT)
ZONE = "America/New_York"
TABLE = "ad_events/v1"
VIEW = "_views/advertising/ad_events/v1"


def _events() -> list[dict[str, Any]]:
    # Offsets other than Z too: the file must hold the instant, not the wall-clock reading.
    return [
        *good_beacons(),
        beacon(50, event_time="2026-11-24T05:30:00-05:00", received_at="2026-11-24T11:30:00.5+01:00"),
        beacon(51, event_time="2026-11-24T23:59:59.999999Z", received_at="2026-11-25T00:00:01Z"),
    ]


def _micros(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


EXPECTED = sorted((e["event_id"], _micros(e["event_time"]), _micros(e["received_at"])) for e in _events())


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run the test in a process time zone west of UTC (so a naive timestamp would read shifted)."""
    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def _publish_day(settings: TransformSettings, s3: Any, root: Path) -> Path:
    """Transform and publish the day, then mirror the curated bucket (every key) under ``root``."""
    await put_raw(s3, settings.bucket("raw"), f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(_events()))
    client = sync_client(settings)
    curated = settings.bucket("curated")

    def _run_and_mirror() -> None:
        run_local_partition(
            client,
            settings,
            schema=SCHEMA,
            source_bucket=settings.bucket("raw"),
            source_prefix=f"beacon/dt={DT}/",
            dt=DAY,
            hour=None,
            transform_id="readers",
        )
        for item in list_keys(client, curated, ""):
            target = root / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(curated, item["Key"], str(target))

    try:
        await asyncio.to_thread(_run_and_mirror)
    finally:
        client.close()
    assert (root / CuratedPartition("ad_events", 1, DAY).manifest).exists()
    return root


async def test_pyarrow_and_duckdb_read_the_day_with_their_defaults(
    settings: TransformSettings, s3: Any, tmp_path: Path, new_york: None
) -> None:
    root = await _publish_day(settings, s3, tmp_path / "curated")

    # pyarrow: hive discovery, and plain read_table (which failed to merge a file dt with the path's dt)
    table = ds.dataset(root / TABLE, partitioning="hive").to_table()
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.names.count("dt") == 1
    assert set(table.column("dt").to_pylist()) == {DT}  # pyarrow's hive discovery types dates as strings
    rows = sorted(
        (r["event_id"], int(r["event_time"].timestamp() * 1e6), int(r["received_at"].timestamp() * 1e6))
        for r in table.to_pylist()
    )
    assert rows == EXPECTED
    assert pq.read_table(root / TABLE).num_rows == len(EXPECTED)

    # DuckDB: hive partitioning, a session in New York
    con = duckdb.connect()
    con.execute(f"SET TimeZone = '{ZONE}'")
    relation = con.sql(
        f"SELECT * FROM read_parquet('{root / TABLE}/**/*.parquet', hive_partitioning = true) ORDER BY event_id"
    )
    types = dict(zip(relation.columns, (str(t) for t in relation.types), strict=True))
    assert (types["event_time"], types["received_at"], types["dt"]) == (
        "TIMESTAMP WITH TIME ZONE",
        "TIMESTAMP WITH TIME ZONE",
        "DATE",
    )
    duck = con.sql(
        "SELECT event_id, epoch_us(event_time), epoch_us(received_at), dt, strftime(event_time, '%H:%M') "
        f"FROM read_parquet('{root / TABLE}/**/*.parquet', hive_partitioning = true) ORDER BY event_id"
    ).fetchall()
    assert [row[:3] for row in duck] == EXPECTED
    assert {row[3] for row in duck} == {DAY}
    # shown in the session's zone: 05:30 in New York is the 10:30Z of the record written with -05:00
    assert dict((row[0], row[4]) for row in duck)["ev-0050"] == "05:30"

    # The view reads the same way: its day is its path's dt=
    view = ds.dataset(root / VIEW, partitioning="hive").to_table()
    assert set(view.column("dt").to_pylist()) == {DT} and view.schema.names.count("dt") == 1
    duck_view = con.sql(
        f"SELECT ad_id, dt, impressions, clicks FROM read_parquet('{root / VIEW}/**/*.parquet', "
        "hive_partitioning = true) ORDER BY ad_id"
    ).fetchall()
    assert duck_view == [("ad-1", DAY, 7, 2), ("ad-2", DAY, 3, 1)]
    con.close()


async def test_a_glob_over_the_tables_of_the_bucket_never_picks_up_views_or_staged_parts(
    settings: TransformSettings, s3: Any, tmp_path: Path
) -> None:
    root = await _publish_day(settings, s3, tmp_path / "curated")
    # a run's staged parts (moved out of the table, under _tmp/) stand where a run in progress leaves them
    staged = root / "_tmp" / TABLE / f"dt={DT}" / "running" / "part-00000.parquet"
    staged.parent.mkdir(parents=True)
    shutil.copy(next((root / TABLE / f"dt={DT}").glob("part-*.parquet")), staged)
    table_parts = sorted(str(p) for p in (root / TABLE).rglob("*.parquet"))
    assert len(table_parts) == 1

    # Hive readers (pyarrow here; Spark, Hive and Trino alike) skip _-prefixed directories: views, staging, schemas
    files = ds.dataset(root, partitioning="hive", format="parquet").files
    assert sorted(files) == table_parts
    # DuckDB hides nothing, but a glob of the table layout cannot reach the views (two levels deeper, under _views)
    con = duckdb.connect()
    for pattern in ("*/v*/dt=*/*.parquet", "*/*/*/*.parquet", "*/v*/**/*.parquet"):
        found = sorted(row[0] for row in con.sql(f"SELECT file FROM glob('{root}/{pattern}')").fetchall())
        assert found == table_parts, pattern
    # a table's own ** glob no longer sees a run's staged parts either
    found = sorted(row[0] for row in con.sql(f"SELECT file FROM glob('{root / TABLE}/**/*.parquet')").fetchall())
    assert found == table_parts
    con.close()


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not on PATH (PySpark needs a JVM)")
async def test_spark_reads_the_day_with_its_defaults_in_a_new_york_session(
    settings: TransformSettings, s3: Any, tmp_path: Path, new_york: None
) -> None:
    root = await _publish_day(settings, s3, tmp_path / "curated")
    rows, view, types = await asyncio.to_thread(_read_with_spark, root)
    assert types == {"event_time": "timestamp", "received_at": "timestamp", "dt": "date"}
    assert sorted(r[:3] for r in rows) == EXPECTED
    assert {r[3] for r in rows} == {DAY}
    assert dict((r[0], r[4]) for r in rows)["ev-0050"] == "05:30"  # rendered in the session zone
    assert view == [("ad-1", DAY, 7, 2), ("ad-2", DAY, 3, 1)]


def _read_with_spark(root: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, str]]:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("curated-readers")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", ZONE)
        .config("spark.driver.extraJavaOptions", f"-Duser.timezone={ZONE}")
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(str(root / TABLE))
        types = {
            f.name: f.dataType.simpleString() for f in frame.schema if f.name in ("event_time", "received_at", "dt")
        }
        rows = [
            tuple(r)
            for r in frame.select(
                "event_id",
                F.unix_micros("event_time"),
                F.unix_micros("received_at"),
                "dt",
                F.date_format("event_time", "HH:mm"),
            ).collect()
        ]
        view = [
            tuple(r)
            for r in spark.read.parquet(str(root / VIEW))
            .select("ad_id", "dt", "impressions", "clicks")
            .orderBy("ad_id")
            .collect()
        ]
        return rows, view, types
    finally:
        spark.stop()
