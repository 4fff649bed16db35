"""Arrow types for schemas: the output table layout and the JSON parse schema of the vectorised path."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from services.transform.pathtrie import PathTrie
from shared.schemas import Column, TableSchema

# Instants, not wall-clock readings: Parquet marks them isAdjustedToUTC=true, so DuckDB, Spark and Trino read the
# same instant whatever their session time zone.
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def output_type(column: Column) -> pa.DataType:
    """Return the Arrow (and so Parquet) type of a column."""
    kind, sql = column.kind, column.type
    if kind == "string":
        return pa.string()
    if kind == "int":
        return {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64()}[sql]
    if kind == "float":
        return pa.float32() if sql == "real" else pa.float64()
    if kind == "decimal":
        precision, scale = (int(p) for p in re.findall(r"\d+", sql))
        return pa.decimal128(precision, scale)
    if kind == "bool":
        return pa.bool_()
    if kind == "timestamp":
        return UTC_TIMESTAMP
    return pa.date32()


def output_schema(schema: TableSchema) -> pa.Schema:
    """Return the Arrow schema of a table's curated files (column order as declared)."""
    return pa.schema([pa.field(c.name, output_type(c), nullable=c.nullable) for c in schema.columns])


def file_columns(schema: TableSchema, *, partitioned: bool) -> list[str]:
    """Return the columns a curated file holds: all but the partition column when the path carries it.

    Hive's convention: ``dt=YYYY-MM-DD`` in the path is the column, so the file must not hold a second ``dt``
    (readers would have to merge a date32 from the file with the path's value and fail, or pick one silently).
    """
    names = [c.name for c in schema.columns]
    if partitioned and schema.partition_column:
        return [name for name in names if name != schema.partition_column]
    return names


def source_type(column: Column) -> pa.DataType | None:
    """Return the JSON parse type for a column's source, or None when only the row path handles it."""
    kind = column.kind
    if kind == "string":
        return pa.string()
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "bool":
        return pa.bool_()
    if kind in ("timestamp", "date"):
        if column.transform in ("epoch_seconds_to_timestamp", "epoch_millis_to_timestamp"):
            return pa.float64()
        return pa.string()
    return None


def _arrow(trie: PathTrie[pa.DataType]) -> list[tuple[str, pa.DataType]]:
    return trie.fields(lambda leaf: leaf, pa.list_, lambda fields: pa.struct([pa.field(n, t) for n, t in fields]))


def parse_schema(schema: TableSchema) -> pa.Schema | None:
    """Return the explicit JSON parse schema for the vectorised path, or None when the schema needs the row path.

    The row path is needed when a column's type has no vectorised conversion (decimal) or when source paths
    conflict (the same path read as two types, or as both a value and a parent).
    """
    root: PathTrie[pa.DataType] = PathTrie()
    for column in schema.columns:
        leaf = source_type(column)
        steps: list[Any] = column.path
        if leaf is None or not isinstance(steps[0], str) or not root.add(steps, leaf):
            return None
    return pa.schema([pa.field(name, arrow_type) for name, arrow_type in _arrow(root)])
