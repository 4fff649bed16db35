"""Generate the PySpark script for a schema: the runtime template plus the table's column specification."""

from __future__ import annotations

import pprint
from datetime import date
from pathlib import Path
from typing import Any

from services.transform.engine.arrow_types import file_columns
from services.transform.engine.values import ISO_TIMESTAMP, default_value
from services.transform.engine.views import has_advertising_view
from services.transform.pathtrie import PathTrie
from shared.schemas import EPOCH_TRANSFORMS, Column, TableSchema

TEMPLATE = Path(__file__).with_name("runtime_template.py")
PLACEHOLDER = "SPEC: dict = {}  # HEADWATER_SPEC"

SPARK_TYPES = {
    "smallint": "smallint",
    "integer": "int",
    "bigint": "bigint",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",  # an instant (TimestampType), written as Parquet isAdjustedToUTC=true
    "date": "date",
}


def spark_type(column: Column) -> str:
    """Return the Spark SQL type of a column's output."""
    if column.kind == "string":
        return "string"
    if column.kind == "decimal":
        return column.type.replace(" ", "")
    return SPARK_TYPES[column.type]


def leaf_type(column: Column) -> str:
    """Return the Spark type the JSON source is parsed as (mirrors the local engine's parse types)."""
    kind = column.kind
    if kind == "int":
        return "BIGINT"
    if kind == "float":
        return "DOUBLE"
    if kind == "bool":
        return "BOOLEAN"
    if kind in ("timestamp", "date") and column.transform in EPOCH_TRANSFORMS:
        return "DOUBLE"
    return "STRING"


def json_path(steps: list[str | int]) -> str:
    """Return a get_json_object path in bracket notation ($['a'][0]['b'])."""
    parts = ["$"]
    for step in steps:
        parts.append(f"[{step}]" if isinstance(step, int) else "['" + step.replace("'", "\\'") + "']")
    return "".join(parts)


def _ddl_struct(fields: list[tuple[str, str]]) -> str:
    return "STRUCT<" + ", ".join(f"`{name}`: {ddl}" for name, ddl in fields) + ">"


def _ddl_fields(trie: PathTrie[str]) -> str:
    """Return the trie's top level as Spark DDL column definitions (`name` TYPE, ...)."""
    fields = trie.fields(lambda leaf: leaf, lambda element: f"ARRAY<{element}>", _ddl_struct)
    return ", ".join(f"`{name}` {ddl}" for name, ddl in fields)


def _json_default(column: Column) -> Any:
    value = default_value(column)
    if value is None:
        return None
    if column.kind == "timestamp":
        return _iso_from_micros(value)
    if column.kind == "date":
        return date.fromordinal(719163 + value).isoformat()
    if column.kind == "decimal":
        return str(value)
    return value


def _iso_from_micros(micros: int) -> str:
    seconds, rest = divmod(micros, 1_000_000)
    days, second_of_day = divmod(seconds, 86_400)
    day = date.fromordinal(719163 + days)
    clock = f"{second_of_day // 3600:02d}:{second_of_day // 60 % 60:02d}:{second_of_day % 60:02d}"
    return f"{day.isoformat()} {clock}.{rest:06d}Z"


def build_spec(schema: TableSchema) -> dict[str, Any]:
    """Return the column specification the runtime template reads."""
    parses: list[PathTrie[str]] = []
    objects, arrays = PathTrie[str](), PathTrie[str]()
    columns = []
    for column in schema.columns:
        steps = column.path
        leaf = leaf_type(column)
        index = next((i for i, trie in enumerate(parses) if trie.add(steps, leaf)), None)
        if index is None:
            parses.append(PathTrie())
            parses[-1].add(steps, leaf)
            index = len(parses) - 1
        detect = None
        if column.kind == "string" and objects.add(steps, "MAP<STRING, STRING>"):
            detect = arrays.add(steps, "ARRAY<STRING>") or None
        columns.append(
            {
                "name": column.name,
                "source": column.source,
                "type": column.type,
                "kind": column.kind,
                "spark_type": spark_type(column),
                "steps": steps,
                "json_path": json_path(steps),
                "parse": index,
                "nullable": column.nullable,
                "default": _json_default(column),
                "transform": column.transform,
                "limit": column.varchar_length,
                "detect": detect,
            }
        )
    return {
        "table": schema.name,
        "version": schema.version,
        "columns": columns,
        "parse": [_ddl_fields(trie) for trie in parses],
        "objects": _ddl_fields(objects) or None,
        "arrays": _ddl_fields(arrays) or None,
        "partition_column": schema.partition_column,
        "file_columns": file_columns(schema, partitioned=True),
        "advertising_view": has_advertising_view(schema),
        "iso_pattern": ISO_TIMESTAMP.pattern,
    }


def generate_script(schema: TableSchema) -> str:
    """Return the PySpark script for a schema (self-contained; needs only pyspark)."""
    template = TEMPLATE.read_text()
    if PLACEHOLDER not in template:
        raise RuntimeError("the Spark runtime template lost its SPEC placeholder")
    spec = pprint.pformat(build_spec(schema), width=116, sort_dicts=False)
    header = f"# Generated by Headwater for {schema.name} v{schema.version} (regenerate: headwater spark-script).\n"
    return header + template.replace(PLACEHOLDER, f"SPEC: dict = {spec}")
