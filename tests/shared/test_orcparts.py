"""ORC parts rewritten as Parquet (shared.orcparts): every stripe, every type, UTC instants in microseconds."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest

from shared.orcparts import ensure_parquet_beside, is_orc, orc_to_parquet, parquet_beside


def _table(n: int) -> pa.Table:
    base = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    return pa.table(
        {
            "event_id": pa.array([f"e{i}" for i in range(n)]),
            "n": pa.array(range(n), pa.int64()),
            "small": pa.array([i % 100 for i in range(n)], pa.int16()),
            "ratio": pa.array([i / 3 for i in range(n)], pa.float64()),
            "amount": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal128(12, 2)),
            "flag": pa.array([i % 2 == 0 for i in range(n)]),
            "at": pa.array([base + dt.timedelta(microseconds=i * 1001) for i in range(n)], pa.timestamp("us", "UTC")),
            "day": pa.array([dt.date(2026, 11, 20)] * n, pa.date32()),
            "maybe": pa.array([None if i % 3 else "x" for i in range(n)]),
        }
    )


def test_a_many_stripe_orc_file_becomes_the_same_parquet(tmp_path: Path) -> None:
    table = _table(50_000)
    source = tmp_path / "part-00000.orc"
    orc.write_table(table, source, stripe_size=64 * 1024, compression="zstd")
    assert orc.ORCFile(source).nstripes > 1  # the rewrite goes stripe by stripe
    target = tmp_path / "part-00000.parquet"
    assert orc_to_parquet(source, target) == 50_000
    back = pq.read_table(target)
    assert back.schema.field("at").type == pa.timestamp("us", "UTC")
    assert back.equals(table)
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_rewrite_beside_a_part_is_redone_only_when_the_part_changes(tmp_path: Path) -> None:
    source = tmp_path / "part-00000.orc"
    orc.write_table(_table(3), source)
    target = ensure_parquet_beside(source)
    assert target == parquet_beside(source) == tmp_path / "part-00000.orc.parquet"
    assert is_orc(source.name) and not is_orc(target.name)
    first = target.stat().st_mtime_ns
    assert ensure_parquet_beside(source).stat().st_mtime_ns == first  # up to date: left alone
    orc.write_table(_table(5), source)
    later = target.stat().st_mtime_ns + 1_000_000_000
    os.utime(source, ns=(later, later))
    assert pq.read_table(ensure_parquet_beside(source)).num_rows == 5


def test_a_timestamp_without_zone_is_read_as_utc(tmp_path: Path) -> None:
    """Spark writes ORC ``timestamp`` (no zone) as the writer's wall clock; transform's Spark jobs run in UTC."""
    source = tmp_path / "spark.orc"
    naive = pa.table({"at": pa.array([dt.datetime(2026, 11, 20, 12, 0, 0, 123456)], pa.timestamp("ns"))})
    orc.write_table(naive, source)
    orc_to_parquet(source, tmp_path / "spark.parquet")
    back = pq.read_table(tmp_path / "spark.parquet")
    assert back.schema.field("at").type == pa.timestamp("us", "UTC")
    assert back.column("at")[0].as_py() == dt.datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=dt.UTC)


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not on PATH (PySpark needs a JVM)")
def test_spark_written_orc_keeps_its_instants(tmp_path: Path) -> None:
    """ORC as transform's Spark runtime writes it (session and JVM in UTC), rewritten as Parquet."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("orc-parts")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    micros = 1_795_176_000_123_456  # 2026-11-20T12:00:00.123456Z
    try:
        frame = spark.createDataFrame([("e1", 7)], ["event_id", "n"]).withColumn(
            "at", F.timestamp_micros(F.lit(micros))
        )
        frame.write.orc(str(tmp_path / "out"))
    finally:
        spark.stop()
    [source] = (tmp_path / "out").glob("*.orc")
    orc_to_parquet(source, tmp_path / "part.parquet")
    row = pq.read_table(tmp_path / "part.parquet").to_pylist()[0]
    assert row == {"event_id": "e1", "n": 7, "at": dt.datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=dt.UTC)}
