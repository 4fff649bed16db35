"""What each default reader makes of a partition day, layout by layout: the evidence behind the curated layout.

Issue #14 asks that pyarrow (``ds.dataset(path, partitioning="hive")``), DuckDB (``read_parquet(...,
hive_partitioning = true)``) and Spark (``spark.read.parquet(path)``) give the same rows and types with their
defaults. These tests pin what the installed readers do with each candidate layout (see the docstring of
``services/transform/engine/sink.py`` for the choice made): when a reader's inference changes, a test here fails
and the choice can be made again.
"""

from __future__ import annotations

import importlib.util
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

DAY = date(2026, 11, 24)

# name -> the part files of one table version, and whether the files hold dt (a date32) themselves
LAYOUTS: dict[str, tuple[list[str], bool]] = {
    "current: dt= in the path only": (["dt=2026-11-24/part-00000.parquet"], False),
    "dt in the path and in the file": (["dt=2026-11-24/part-00000.parquet"], True),
    "dt in the file, plain day directory": (["2026-11-24/part-00000.parquet"], True),
    "dt in the file, flat files": (["part-2026-11-24-00000.parquet", "part-2026-11-25-00000.parquet"], True),
    "dt= a non-ISO string": (["dt=2026_11_24/part-00000.parquet"], False),
    "hour= in the path": (["dt=2026-11-24/hour=10/part-00000.parquet"], False),
    "daily and hourly parts in one table": (
        ["dt=2026-11-24/part-00000.parquet", "dt=2026-11-25/hour=10/part-00000.parquet"],
        False,
    ),
}

# What each reader gives ({column: type} of dt/hour, rows), or the start of its error.
EXPECTED: dict[str, dict[str, Any]] = {
    "current: dt= in the path only": {
        "pyarrow": ({"dt": "string"}, 2),
        "duckdb": ({"dt": "DATE"}, 2),
        "spark": ({"dt": "date"}, 2),
    },
    "dt in the path and in the file": {
        "pyarrow": "ArrowTypeError",  # Unable to merge: Field dt has incompatible types: date32[day] vs string
        "duckdb": ({"dt": "DATE"}, 2),
        "spark": ({"dt": "date"}, 2),
    },
    "dt in the file, plain day directory": {
        "pyarrow": ({"dt": "date32[day]"}, 2),
        "duckdb": ({"dt": "DATE"}, 2),
        "spark": "UNABLE_TO_INFER_SCHEMA",  # Spark only reads files in the root or in key=value directories
    },
    "dt in the file, flat files": {
        "pyarrow": ({"dt": "date32[day]"}, 4),
        "duckdb": ({"dt": "DATE"}, 4),
        "spark": ({"dt": "date"}, 4),
    },
    "dt= a non-ISO string": {
        "pyarrow": ({"dt": "string"}, 2),
        "duckdb": ({"dt": "VARCHAR"}, 2),
        "spark": ({"dt": "string"}, 2),
    },
    "hour= in the path": {
        "pyarrow": ({"dt": "string", "hour": "int32"}, 2),
        "duckdb": ({"dt": "DATE", "hour": "BIGINT"}, 2),
        "spark": ({"dt": "date", "hour": "int"}, 2),
    },
    "daily and hourly parts in one table": {
        "pyarrow": ({"dt": "string", "hour": "int32"}, 4),
        "duckdb": "BinderException",  # Hive partition mismatch
        "spark": "CONFLICTING_PARTITION_COLUMN_NAMES",
    },
}


def _write(root: Path) -> dict[str, Path]:
    tables = {}
    for index, (name, (files, with_dt)) in enumerate(LAYOUTS.items()):
        table_dir = root / f"layout{index}"
        for file in files:
            columns: dict[str, Any] = {"id": pa.array(["a", "b"])}
            if with_dt:
                columns["dt"] = pa.array([DAY, DAY], pa.date32())
            (table_dir / file).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(columns), table_dir / file)
        tables[name] = table_dir
    return tables


def _pyarrow(path: Path) -> Any:
    try:
        table = ds.dataset(path, partitioning="hive").to_table()
    except Exception as exc:
        return type(exc).__name__
    return {f.name: str(f.type) for f in table.schema if f.name != "id"}, table.num_rows


def _duckdb(path: Path) -> Any:
    try:
        relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)")
        columns = {c: str(t) for c, t in zip(relation.columns, relation.types, strict=True) if c != "id"}
        return columns, len(relation.fetchall())
    except duckdb.Error as exc:
        return type(exc).__name__


def test_pyarrow_and_duckdb_infer_the_partition_day_as_pinned(tmp_path: Path) -> None:
    for name, path in _write(tmp_path).items():
        assert (_pyarrow(path), _duckdb(path)) == (EXPECTED[name]["pyarrow"], EXPECTED[name]["duckdb"]), name
    agreeing = [name for name, found in EXPECTED.items() if len({_canonical(v) for v in found.values()}) == 1]
    # With a per-day directory, no layout gives one type in all three readers but the non-ISO string.
    assert agreeing == ["dt in the file, flat files", "dt= a non-ISO string"]


def _canonical(found: Any) -> Any:
    if isinstance(found, str):
        return ("error", found)
    columns, rows = found
    names = {"date32[day]": "date", "DATE": "date", "VARCHAR": "string", "BIGINT": "int64", "int32": "int32"}
    return tuple(sorted((c, names.get(t, t)) for c, t in columns.items())), rows


@pytest.mark.spark
@pytest.mark.skipif(importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Java is not on PATH (PySpark needs a JVM)")
def test_spark_infers_the_partition_day_as_pinned(tmp_path: Path) -> None:
    from pyspark.sql import SparkSession

    tables = _write(tmp_path)
    spark = SparkSession.builder.master("local[1]").appName("layouts").config("spark.ui.enabled", "false").getOrCreate()
    try:
        for name, path in tables.items():
            try:
                frame = spark.read.parquet(str(path))
                found: Any = (
                    {f.name: f.dataType.simpleString() for f in frame.schema if f.name != "id"},
                    frame.count(),
                )
            except Exception as exc:  # AnalysisException: its error class names the reason
                found = str(exc)
            expected = EXPECTED[name]["spark"]
            if isinstance(expected, str):
                assert isinstance(found, str) and expected in found, (name, found)
            else:
                assert found == expected, name
    finally:
        spark.stop()


def test_a_common_metadata_file_does_not_type_the_day_for_pyarrow(tmp_path: Path) -> None:
    # Readers of Hive layouts skip _-prefixed files; pyarrow's default discovery ignores the schema they declare.
    (tmp_path / "dt=2026-11-24").mkdir()
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "dt=2026-11-24" / "part-00000.parquet")
    declared = pa.schema([("id", pa.string()), ("dt", pa.date32())])
    for name in ("_common_metadata", "_metadata"):
        pq.write_metadata(declared, tmp_path / name)
    assert _pyarrow(tmp_path) == ({"dt": "string"}, 1)
    assert _duckdb(tmp_path) == ({"dt": "DATE"}, 1)  # DuckDB's DATE comes from the path, as without the file


def test_pyarrow_reads_the_day_as_a_date_when_told_its_type(tmp_path: Path) -> None:
    path = _write(tmp_path)["current: dt= in the path only"]
    hive = ds.partitioning(pa.schema([("dt", pa.date32())]), flavor="hive")
    table = ds.dataset(path, partitioning=hive).to_table()
    assert table.schema.field("dt").type == pa.date32() and set(table.column("dt").to_pylist()) == {DAY}
