"""log2schema: infer a table schema from JSON lines in one streaming pass with bounded memory.

Per flattened path it keeps a few counters (how often present, which JSON kinds, integer range, longest string)
so memory depends on the number of distinct paths (capped), never on the number of lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
import yaml

from services.transform.engine.blocks import iter_blocks
from services.transform.engine.values import ISO_TIMESTAMP
from shared.schemas import TableSchema, parse_schema_yaml

MAX_PATHS = 2000
MAX_VARCHAR = 65535
TIME_NAMES = ("event_time", "timestamp", "time", "ts", "created_at", "received_at")
_SAFE_KEY = re.compile(r"^[^.\[\]]+$")
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
EPOCH_SECONDS = (946_684_800, 4_102_444_800)  # 2000 .. 2100
EPOCH_MILLIS = (EPOCH_SECONDS[0] * 1000, EPOCH_SECONDS[1] * 1000)


@dataclass
class PathStats:
    """What was seen at one path."""

    present: int = 0
    kinds: set[str] = field(default_factory=set)
    min_int: int | None = None
    max_int: int | None = None
    max_bytes: int = 0

    def add(self, value: Any) -> None:
        """Record one non-null scalar value."""
        self.present += 1
        kind = type(value)
        if kind is str:
            size = len(value) if value.isascii() else len(value.encode())
            if size > self.max_bytes:
                self.max_bytes = size
            if "string" in self.kinds:  # already text: dates/timestamps would widen to varchar anyway
                return
            match = ISO_TIMESTAMP.match(value)
            if match is None:
                self.kinds.add("string")
            elif match.group(4) is None and match.group(8) is None:
                self.kinds.add("date")
            else:
                self.kinds.add("timestamp")
        elif kind is bool:
            self.kinds.add("bool")
        elif kind is int:
            self.kinds.add("int")
            if self.min_int is None or value < self.min_int:
                self.min_int = value
            if self.max_int is None or value > self.max_int:
                self.max_int = value
        elif kind is float:
            self.kinds.add("float")


@dataclass
class Inference:
    """Accumulated statistics over all records."""

    records: int = 0
    bad_lines: int = 0
    paths: dict[str, PathStats] = field(default_factory=dict)
    objects: set[str] = field(default_factory=set)
    arrays: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)
    _paths_cache: dict[tuple[str, str], str | None] = field(default_factory=dict, repr=False)

    def add_record(self, record: dict[str, Any]) -> None:
        """Walk one record, flattening nested objects into dotted paths."""
        self.records += 1
        self._walk(record, "")

    def _walk(self, node: dict[str, Any], prefix: str) -> None:
        paths = self._paths_cache
        for key, value in node.items():
            path = paths.get((prefix, key), "")
            if path == "":
                path = f"{prefix}{key}" if _SAFE_KEY.match(key) and key.strip() == key else None
                paths[(prefix, key)] = path
                if len(paths) > MAX_PATHS * 4:
                    paths.clear()
            if path is None:
                self._skip(f"{prefix}{key}")
                continue
            if value is None:
                self._stats(path)
            elif type(value) is dict:
                self.objects.add(path)
                self._walk(value, f"{path}.")
            elif type(value) is list:
                self.arrays.add(path)
            else:
                stats = self.paths.get(path) or self._stats(path)
                if stats is not None:
                    stats.add(value)

    def _stats(self, path: str) -> PathStats | None:
        stats = self.paths.get(path)
        if stats is None:
            if len(self.paths) >= MAX_PATHS:
                self._skip(path)
                return None
            stats = self.paths[path] = PathStats()
        return stats

    def _skip(self, path: str) -> None:
        if len(self.skipped) < MAX_PATHS:
            self.skipped.add(path)


def read_records(stream: BinaryIO, inference: Inference, max_lines: int | None = None) -> Inference:
    """Feed JSON lines (plain or gzip) from a binary stream into the inference."""
    seen = 0
    for block in iter_blocks(stream):
        for raw in block.data.split(b"\n"):
            if not raw.strip():
                continue
            if max_lines is not None and seen >= max_lines:
                return inference
            seen += 1
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                inference.bad_lines += 1
                continue
            if isinstance(record, dict):
                inference.add_record(record)
            else:
                inference.bad_lines += 1
    return inference


def _varchar(max_bytes: int) -> str:
    """Return varchar(n) with headroom: the next power of two at or above 1.25x the longest value (16 minimum)."""
    wanted = max(16, int(max_bytes * 1.25) + 1)
    size = 16
    while size < wanted:
        size *= 2
    return f"varchar({min(size, MAX_VARCHAR)})"


def _epoch_transform(path: str, stats: PathStats) -> str | None:
    name = path.rsplit(".", 1)[-1].lower()
    if stats.kinds != {"int"} or not (name in TIME_NAMES or name.endswith(("_at", "_time", "_ts"))):
        return None
    assert stats.min_int is not None and stats.max_int is not None
    if EPOCH_SECONDS[0] <= stats.min_int and stats.max_int <= EPOCH_SECONDS[1]:
        return "epoch_seconds_to_timestamp"
    if EPOCH_MILLIS[0] <= stats.min_int and stats.max_int <= EPOCH_MILLIS[1]:
        return "epoch_millis_to_timestamp"
    return None


def sql_type(path: str, stats: PathStats) -> tuple[str, str | None]:
    """Return (SQL type, transform) for what was seen at a path, widening across records."""
    kinds = stats.kinds
    if not kinds:
        return "varchar(256)", None
    transform = _epoch_transform(path, stats)
    if transform:
        return "timestamp", transform
    if kinds == {"bool"}:
        return "boolean", None
    if kinds == {"int"}:
        assert stats.min_int is not None and stats.max_int is not None
        if INT32[0] <= stats.min_int and stats.max_int <= INT32[1]:
            return "integer", None
        if INT64[0] <= stats.min_int and stats.max_int <= INT64[1]:
            return "bigint", None
        return "double precision", None
    if kinds <= {"int", "float"}:
        return "double precision", None
    if kinds == {"date"}:
        return "date", None
    if kinds <= {"date", "timestamp"}:
        return "timestamp", None
    # Strings, or a mix: keep the text (numbers and booleans keep their JSON text in varchar columns).
    return _varchar(stats.max_bytes), None


def column_name(path: str, taken: set[str]) -> str:
    """Turn a path into a unique lower-case column name."""
    base = re.sub(r"[^a-z0-9_]+", "_", path.lower().replace(".", "_")).strip("_") or "col"
    if not re.match(r"^[a-z_]", base):
        base = f"_{base}"
    base = base[:120]
    name, counter = base, 2
    while name in taken:
        name, counter = f"{base}_{counter}", counter + 1
    taken.add(name)
    return name


def build_schema(
    inference: Inference, *, name: str, version: int = 1, partition_from: str | None = None
) -> tuple[TableSchema, list[str]]:
    """Turn the statistics into a schema; also return notes (skipped paths, choices) for YAML comments."""
    columns: list[dict[str, Any]] = []
    notes: list[str] = [f"inferred from {inference.records} records ({inference.bad_lines} lines not JSON objects)"]
    taken: set[str] = set()
    sources: dict[str, dict[str, Any]] = {}
    for path in inference.paths:  # first-seen order
        if path in inference.objects:
            notes.append(f"{path}: both an object and a scalar; only its nested fields are columns")
            continue
        stats = inference.paths[path]
        sql, transform = sql_type(path, stats)
        column: dict[str, Any] = {"name": column_name(path, taken), "source": path, "type": sql}
        if transform:
            column["transform"] = transform
        column["nullable"] = stats.present < inference.records
        columns.append(column)
        sources[path] = column
    for path in sorted(inference.arrays):
        notes.append(f"{path}: an array; map its items with an index, e.g. {path}[0]")
    for path in sorted(inference.skipped)[:50]:
        notes.append(f"{path}: skipped (key not addressable or too many paths)")
    if not columns:
        raise ValueError("no columns found: the input had no JSON objects with scalar fields")
    time_source = partition_from or next(
        (p for p in TIME_NAMES if p in sources and sources[p]["type"] in ("timestamp", "date")), None
    )
    partition_column = None
    sort_key: list[str] = []
    if time_source is not None:
        if time_source not in sources or sources[time_source]["type"] not in ("timestamp", "date"):
            raise ValueError(f"partition source {time_source!r} is not a timestamp or date field")
        base = sources[time_source]
        partition_column = "dt" if "dt" not in taken else column_name("dt", taken)
        partition = {"name": partition_column, "source": time_source, "type": "date", "nullable": False}
        if base.get("transform"):
            partition["transform"] = base["transform"]
        columns.append(partition)
        sort_key = [base["name"]]
    document = {
        "name": name,
        "version": version,
        "columns": columns,
        "partition_column": partition_column,
        "sort_key": sort_key,
        "dist_key": None,
    }
    return parse_schema_yaml(yaml.safe_dump(document, sort_keys=False)), notes


def render_yaml(schema: TableSchema, notes: Iterable[str]) -> str:
    """Render the schema as YAML, one flow mapping per column, with the notes as comments on top."""
    lines = [f"# {note}" for note in notes]
    lines += [f"name: {schema.name}", f"version: {schema.version}", "columns:"]
    for column in schema.columns:
        fields = {"name": column.name, "source": column.source, "type": column.type, "nullable": column.nullable}
        if column.transform:
            fields["transform"] = column.transform
        flow = yaml.safe_dump(fields, default_flow_style=True, sort_keys=False, width=10_000).strip()
        lines.append(f"  - {flow}")
    if schema.partition_column:
        lines.append(f"partition_column: {schema.partition_column}")
    if schema.sort_key:
        lines.append(f"sort_key: [{', '.join(schema.sort_key)}]")
    text = "\n".join(lines) + "\n"
    parse_schema_yaml(text)  # what we print must load
    return text
