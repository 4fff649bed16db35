"""log2schema: inference on tricky input, through the CLI, in bounded memory."""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
from typing import Any

import orjson
from typer.testing import CliRunner

from headwater.main import app
from services.transform.infer import Inference, build_schema, read_records
from shared.schemas import parse_schema_yaml

TRICKY: list[Any] = [
    {
        "id": 1,
        "price": 10,
        "flag": True,
        "code": 7,
        "when": "2026-11-24T10:00:00Z",
        "day": "2026-11-24",
        "created_at": 1795852800,
        "user": {"name": "ann", "geo": {"lat": 1.5}},
        "tags": ["a"],
        "a.b": 1,
    },
    {
        "id": 2,
        "price": 10.5,
        "flag": False,
        "code": "X7",
        "when": "2026-11-24",
        "day": "2026-11-25",
        "created_at": 1795852801,
        "user": {"name": "bob-the-builder-of-very-long-names"},
        "note": None,
    },
    {
        "id": 3,
        "price": None,
        "flag": True,
        "code": 8,
        "when": "2026-11-24 11:00:00.5+01:00",
        "day": "2026-11-26",
        "created_at": 1795852802,
        "user": {"name": None, "geo": {"lat": 2}},
        "User": {"Name": "case"},
    },
]


def _infer(lines: bytes, **kwargs: Any) -> Any:
    inference = read_records(io.BytesIO(lines), Inference())
    return build_schema(inference, name="tricky", **kwargs)


def _lines(records: list[Any]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records) + b"\n"


def test_types_are_widened_across_records_and_nested_paths_flattened() -> None:
    schema, notes = _infer(_lines(TRICKY) + b"not json\n[1]\n", partition_from="created_at")

    columns = {c.name: (c.source, c.type, c.nullable, c.transform) for c in schema.columns}
    assert columns == {
        "id": ("id", "integer", False, None),
        "price": ("price", "double precision", True, None),
        "flag": ("flag", "boolean", False, None),
        "code": ("code", "varchar(16)", False, None),
        "when": ("when", "timestamp", False, None),
        "day": ("day", "date", False, None),
        "created_at": ("created_at", "timestamp", False, "epoch_seconds_to_timestamp"),
        "user_name": ("user.name", "varchar(64)", True, None),
        "user_geo_lat": ("user.geo.lat", "double precision", True, None),
        "note": ("note", "varchar(256)", True, None),
        "user_name_2": ("User.Name", "varchar(16)", True, None),
        "dt": ("created_at", "date", False, "epoch_seconds_to_timestamp"),
    }
    assert schema.partition_column == "dt" and schema.sort_key == ["created_at"]
    assert "inferred from 3 records (2 lines not JSON objects)" in notes[0]
    assert any(n.startswith("tags: an array") for n in notes)
    assert any(n.startswith("a.b: skipped") for n in notes)


def test_cli_reads_gzip_on_stdin_and_prints_loadable_yaml() -> None:
    result = CliRunner().invoke(
        app, ["log2schema", "--name", "tricky", "--version", "3"], input=gzip.compress(_lines(TRICKY))
    )

    assert result.exit_code == 0, result.output
    schema = parse_schema_yaml(result.stdout)
    assert (schema.name, schema.version, schema.partition_column) == ("tricky", 3, "dt")
    assert schema.column("dt").transform == "epoch_seconds_to_timestamp"
    assert result.stdout.startswith("# inferred from 3 records")


def test_cli_picks_event_time_as_partition_source_and_fails_cleanly_on_empty_input() -> None:
    records = [{"event_id": "e1", "event_time": "2026-11-24T10:00:00Z"}]
    ok = CliRunner().invoke(app, ["log2schema"], input=_lines(records))
    empty = CliRunner().invoke(app, ["log2schema"], input=b"\n\n")

    assert parse_schema_yaml(ok.stdout).column("dt").source == "event_time"
    assert empty.exit_code == 1
    assert "no columns found" in empty.stderr


def test_memory_stays_bounded_over_many_lines() -> None:
    def record(i: int) -> bytes:
        return json.dumps({"id": i, "name": f"user-{i}", "props": {"k": i % 7, "v": f"{i}" * 3}}).encode()

    body = gzip.compress(b"\n".join(record(i) for i in range(20_000)))
    tracemalloc.start()
    inference = read_records(io.BytesIO(body), Inference())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert inference.records == 20_000
    assert len(inference.paths) == 4
    assert peak < 64 * 1024 * 1024  # the input is ~8 MiB of JSON per block, never all lines at once


def test_spark_script_command_prints_a_compilable_script_for_a_schema_file(tmp_path: Any) -> None:
    from services.transform.builtin_schemas import METER_READS_V1

    schema_file = tmp_path / "meter_reads.yaml"
    schema_file.write_text(METER_READS_V1)

    result = CliRunner().invoke(app, ["spark-script", str(schema_file)])

    assert result.exit_code == 0, result.output
    compile(result.stdout, "generated.py", "exec")
    assert "'table': 'meter_reads'" in result.stdout and 'spark.read.option("recursiveFileLookup"' in result.stdout
