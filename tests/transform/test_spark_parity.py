"""The generated PySpark script, run by local PySpark, gives the local engine's rows, bad rows and view."""

from __future__ import annotations

import glob
import gzip
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from services.transform.builtin_schemas import AD_EVENTS_V1
from services.transform.engine.local import transform_sources
from services.transform.spark.script import generate_script
from shared.schemas import TableSchema, parse_schema_yaml
from tests.transform.sample import BAD_LINES, good_beacons, jsonl
from tests.transform.test_engine import NESTED, TRICKY

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        importlib.util.find_spec("pyspark") is None, reason="pyspark is not installed (pip install -e '.[spark]')"
    ),
    pytest.mark.skipif(shutil.which("java") is None, reason="Java is not on PATH (PySpark needs a JVM)"),
]

DRIVER = """
import importlib.util, sys
for script, argv in zip(sys.argv[1::2], sys.argv[2::2]):
    spec = importlib.util.spec_from_file_location("generated", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv.split(" "))
"""

CASES: list[tuple[TableSchema, date, bytes]] = [
    (
        parse_schema_yaml(AD_EVENTS_V1),
        date(2026, 11, 24),
        jsonl(
            good_beacons(),
            [line for line, _ in BAD_LINES]
            + [b"", b"[1,2]", b'{"a": 1} {"a": 2}', b'{"a": 1} x', b'{"a": 1}, {"a": 2}'],
        ),
    ),
    (NESTED, date(2026, 11, 28), b"\n".join(json.dumps(r).encode() for r in TRICKY) + b"\n{not json\n"),
]


def _kinds(errors: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((e["column"], e["kind"]) for e in errors)


@pytest.fixture(scope="module")
def spark_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Run each case's generated script once (one Python process, one JVM)."""
    base = tmp_path_factory.mktemp("spark")
    args: list[str] = []
    stagings = []
    for index, (schema, dt, body) in enumerate(CASES):
        # The raw layout: the partition directory with hour subdirectories and a _COMPLETE marker to skip.
        source = base / f"in-{index}"
        (source / "hour=10").mkdir(parents=True)
        (source / "hour=10" / "part.json.gz").write_bytes(gzip.compress(body))
        (source / "_COMPLETE").write_text("{}")
        script = base / f"{schema.name}.py"
        script.write_text(generate_script(schema))
        staging = base / f"out-{index}"
        stagings.append(staging)
        args += [str(script), f"--input {source}/ --staging {staging}/ --dt {dt.isoformat()} --master local[1]"]
    subprocess.run([sys.executable, "-c", DRIVER, *args], check=True, timeout=240, capture_output=True)
    return stagings


@pytest.mark.parametrize("case", [0, 1], ids=["ad_events", "nested"])
def test_spark_output_matches_the_local_engine(case: int, spark_runs: list[Path], tmp_path: Path) -> None:
    schema, dt, body = CASES[case]
    staging = spark_runs[case]
    lines = [line for line in body.split(b"\n") if line.strip()]
    local = transform_sources(schema, [("in", lambda: io.BytesIO(body))], dt=dt, workdir=tmp_path)

    spark_table = pq.read_table(glob.glob(f"{staging}/data/*.parquet"))
    local_table = pq.read_table(local.parts[0].path)
    assert spark_table.schema.names == local_table.schema.names
    assert [f.type for f in spark_table.schema] == [f.type for f in local_table.schema]
    key = schema.columns[0].name
    assert sorted(spark_table.to_pylist(), key=lambda r: r[key]) == sorted(
        local_table.to_pylist(), key=lambda r: r[key]
    )

    spark_bad = [json.loads(line) for path in glob.glob(f"{staging}/bad/*.json.gz") for line in gzip.open(path)]
    local_bad = [json.loads(line) for line in gzip.open(local.bad_rows_path)] if local.bad_rows_path else []
    # Spark keeps the raw line as the record; the local engine keeps its line number: compare kinds per line.
    by_line_spark = sorted((row["record"], _kinds(row["errors"])) for row in spark_bad)
    by_line_local = sorted((_line(body, row["line"]), _kinds(row["errors"])) for row in local_bad)
    assert by_line_spark == by_line_local
    assert len(by_line_local) == len(lines) - local.rows_out
    stats = json.loads((staging / "_stats.json").read_text())
    assert stats == {"rows_in": local.rows_in, "rows_out": local.rows_out, "rows_bad": local.rows_bad}
    if local.view is not None:
        spark_view = pq.read_table(glob.glob(f"{staging}/view/*.parquet"))
        assert spark_view.schema.names == local.view.schema.names
        assert spark_view.to_pylist() == local.view.to_pylist()


def _line(body: bytes, number: int) -> str:
    return body.split(b"\n")[number - 1].decode()
