"""Map blocks of JSON lines to typed Arrow tables plus bad rows with reasons.

Two paths with one meaning: the row path (orjson, one record at a time, the definition in ``values``) and a
vectorised path (Arrow's multithreaded JSON reader plus compute kernels) used whenever a block parses cleanly
under the schema's explicit JSON types. A block the vectorised path cannot take (a malformed line, a type the
parser refuses, a timestamp its cast rejects) falls back to the row path as a whole, and rows the vectorised
path flags as bad get their reasons from the row path, so both paths give the same rows and the same reasons.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from services.transform.engine.arrow_types import UTC_TIMESTAMP, output_schema, output_type, parse_schema
from services.transform.engine.values import (
    FLOAT32_MAX,
    INT_RANGES,
    ISO_TIMESTAMP,
    FieldError,
    convert,
    default_value,
    get_path,
    missing_reason,
)
from shared.schemas import Column, TableSchema

_ZONE_SUFFIX = r"(Z|[+-]\d{2}(:?\d{2})?)$"
_MAX_MICROS = 253_402_300_799_999_999
_DAY_MICROS = 86_400_000_000


@dataclass
class BadRow:
    """A record that does not fit the schema, with every reason."""

    reason: str
    errors: list[dict[str, str]]
    record: Any
    line: int | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the bad-rows file representation."""
        return {
            "reason": self.reason,
            "errors": self.errors,
            "source": self.source,
            "line": self.line,
            "record": self.record,
        }


@dataclass
class MappedBlock:
    """The result of mapping one block: good rows as a table, bad rows, and how many records came in."""

    table: pa.Table
    bad: list[BadRow] = field(default_factory=list)
    rows_in: int = 0
    vectorised: bool = False


class _Fallback(Exception):
    """The vectorised path cannot take this block; use the row path."""


class BlockMapper:
    """Map blocks of JSON lines for one schema (and, when given, one partition day)."""

    def __init__(self, schema: TableSchema, *, dt: date | None = None, vectorised: bool = True) -> None:
        self.schema = schema
        self.columns = schema.columns
        self.out_schema = output_schema(schema)
        self.defaults = [default_value(c) for c in self.columns]
        self.paths = [c.path for c in self.columns]
        self.partition_index = (
            [c.name for c in self.columns].index(schema.partition_column)
            if schema.partition_column and dt is not None
            else None
        )
        self.dt_days = (dt - date(1970, 1, 1)).days if dt is not None else None
        self._parse_schema = parse_schema(schema) if vectorised else None
        self._parse_options = (
            pj.ParseOptions(explicit_schema=self._parse_schema, unexpected_field_behavior="ignore")
            if self._parse_schema is not None
            else None
        )

    # -- the row path: the definition -------------------------------------------------------------

    def map_record(self, raw: bytes) -> tuple[list[Any] | None, BadRow | None]:
        """Map one JSON line to output values, or to a bad row."""
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            text = raw.decode("utf-8", errors="replace")
            error = {"column": "", "kind": "malformed_json", "reason": f"malformed JSON: {exc}"}
            return None, BadRow(error["reason"], [error], text)
        if not isinstance(record, dict):
            error = {"column": "", "kind": "type_mismatch", "reason": "type mismatch: a record must be a JSON object"}
            return None, BadRow(error["reason"], [error], record)
        values: list[Any] = []
        errors: list[dict[str, str]] = []
        for column, steps, default in zip(self.columns, self.paths, self.defaults, strict=True):
            value = get_path(record, steps)
            if value is None:
                if default is None and not column.nullable:
                    problem = missing_reason(column)
                    errors.append({"column": column.name, "kind": problem.kind, "reason": problem.reason})
                values.append(default)
                continue
            try:
                values.append(convert(column, value))
            except FieldError as problem:
                errors.append({"column": column.name, "kind": problem.kind, "reason": problem.reason})
                values.append(None)
        if self.partition_index is not None and not errors:
            day = values[self.partition_index]
            if day is not None and day != self.dt_days:
                column = self.columns[self.partition_index]
                reason = (
                    f"partition mismatch: {column.name} {date.fromordinal(719163 + day).isoformat()} is outside "
                    f"the partition {date.fromordinal(719163 + self.dt_days).isoformat()}"  # type: ignore[operator]
                )
                errors.append({"column": column.name, "kind": "partition_mismatch", "reason": reason})
        if errors:
            return None, BadRow("; ".join(e["reason"] for e in errors), errors, record)
        return values, None

    def map_rows(self, block: bytes, *, source: str | None = None, first_line: int = 1) -> MappedBlock:
        """Map a block record by record."""
        columns: list[list[Any]] = [[] for _ in self.columns]
        bad: list[BadRow] = []
        rows_in = 0
        for offset, raw in enumerate(block.split(b"\n")):
            if not raw.strip():
                continue
            rows_in += 1
            values, bad_row = self.map_record(raw)
            if bad_row is not None:
                bad_row.line, bad_row.source = first_line + offset, source
                bad.append(bad_row)
                continue
            for target, value in zip(columns, values, strict=True):  # type: ignore[arg-type]
                target.append(value)
        arrays = [_to_arrow(column, values) for column, values in zip(self.columns, columns, strict=True)]
        return MappedBlock(pa.Table.from_arrays(arrays, schema=self.out_schema), bad, rows_in, vectorised=False)

    # -- the vectorised path ----------------------------------------------------------------------

    def map_block(
        self, block: bytes, *, source: str | None = None, first_line: int = 1, newlines: int = -1
    ) -> MappedBlock:
        """Map a block of JSON lines, vectorised when the block allows it.

        ``newlines`` is the block's newline count when the caller knows it already (saves a pass over the bytes).
        """
        if self._parse_options is None:
            return self.map_rows(block, source=source, first_line=first_line)
        try:
            return self._map_vectorised(block, source=source, first_line=first_line, newlines=newlines)
        except (_Fallback, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self.map_rows(block, source=source, first_line=first_line)

    def _map_vectorised(self, block: bytes, *, source: str | None, first_line: int, newlines: int) -> MappedBlock:
        # One single-threaded parse per block: blocks are mapped in parallel by the engine instead, which costs
        # less CPU than splitting each block across threads.
        read_options = pj.ReadOptions(use_threads=False, block_size=max(len(block) + 1, 1 << 16))
        parsed = pj.read_json(io.BytesIO(block), read_options=read_options, parse_options=self._parse_options)
        lines = (newlines if newlines >= 0 else block.count(b"\n")) + (0 if block.endswith(b"\n") else 1)
        if parsed.num_rows != lines and parsed.num_rows != sum(1 for raw in block.split(b"\n") if raw.strip()):
            # Arrow reads two objects on one line as two rows; the row path calls that line malformed.
            raise _Fallback("rows and lines differ")
        if parsed.num_rows == 0:
            return MappedBlock(self.out_schema.empty_table(), [], 0, vectorised=True)
        arrays: list[pa.Array] = []
        bad_mask: pa.Array | None = None
        parsed_times: dict[tuple[str, str | None], tuple[pa.Array, pa.Array | None]] = {}
        for column, steps, default in zip(self.columns, self.paths, self.defaults, strict=True):
            raw = _extract(parsed, steps)
            value, problems = _convert_array(column, raw, parsed_times)
            if default is not None:
                value = pc.fill_null(value, pa.scalar(_scalar_for(column, default), type=output_type(column)))
            elif not column.nullable:
                problems = _or(problems, pc.is_null(raw))
            arrays.append(value)
            bad_mask = _or(bad_mask, problems)
        if self.partition_index is not None:
            days = pc.cast(arrays[self.partition_index], pa.int32())
            bad_mask = _or(bad_mask, pc.not_equal(days, pa.scalar(self.dt_days, pa.int32())))
        table = pa.Table.from_arrays(arrays, schema=self.out_schema)
        bad: list[BadRow] = []
        if bad_mask is not None and pc.any(bad_mask).as_py():
            bad_mask = pc.fill_null(bad_mask, False)
            bad = self._explain(block, pc.indices_nonzero(bad_mask).to_pylist(), source, first_line)
            table = table.filter(pc.invert(bad_mask))
        return MappedBlock(table, bad, parsed.num_rows, vectorised=True)

    def _explain(self, block: bytes, indexes: list[int], source: str | None, first_line: int) -> list[BadRow]:
        """Get bad rows' reasons from the row path (they must agree that the row is bad)."""
        lines = [(offset, raw) for offset, raw in enumerate(block.split(b"\n")) if raw.strip()]
        bad = []
        for index in indexes:
            offset, raw = lines[index]
            _, bad_row = self.map_record(raw)
            if bad_row is None:
                raise _Fallback(f"paths disagree on line {first_line + offset}")
            bad_row.line, bad_row.source = first_line + offset, source
            bad.append(bad_row)
        return bad


def _or(left: pa.Array | None, right: pa.Array | None) -> pa.Array | None:
    if left is None:
        return right
    if right is None:
        return left
    return pc.or_kleene(left, right)


def _extract(table: pa.Table, steps: list[str | int]) -> pa.Array:
    """Follow a source path through the parsed table; a missing parent gives null."""
    array: pa.Array = table.column(steps[0]).combine_chunks()  # type: ignore[arg-type]
    for step in steps[1:]:
        if isinstance(step, int):
            array = _list_item(array, step)
        else:
            array = pc.struct_field(array, [array.type.get_field_index(step)])
    return array


def _list_item(array: pa.ListArray, index: int) -> pa.Array:
    """Return element ``index`` of each list (null where the list is null or too short)."""
    lengths = pc.fill_null(pc.list_value_length(array), 0)
    present = pc.greater(lengths, index)
    starts = pc.add(array.offsets[:-1], index)
    positions = pc.if_else(present, starts, pa.scalar(None, pa.int32()))
    return pc.take(array.values, positions)


def _convert_array(
    column: Column, raw: pa.Array, parsed_times: dict[tuple[str, str | None], tuple[pa.Array, pa.Array | None]]
) -> tuple[pa.Array, pa.Array | None]:
    """Convert a parsed source array to the output type; return it and the mask of rows that do not fit.

    Timestamps parsed from a source are kept in ``parsed_times`` so a date column of the same source reuses them.
    """
    kind, target = column.kind, output_type(column)
    if kind == "string":
        try:
            raw.validate(full=True)
        except pa.ArrowInvalid as exc:  # invalid UTF-8: the row path reports it as malformed JSON
            raise _Fallback("invalid UTF-8") from exc
        value = raw
        if column.transform == "lower":
            value = pc.utf8_lower(value)
        elif column.transform == "upper":
            value = pc.utf8_upper(value)
        limit = column.varchar_length
        problems = pc.greater(pc.binary_length(value), limit) if limit is not None else None
        return value, problems
    if kind == "int":
        low, high = INT_RANGES[column.type]
        problems = pc.or_(pc.less(raw, low), pc.greater(raw, high)) if column.type != "bigint" else None
        value = pc.if_else(problems, pa.scalar(None, raw.type), raw) if problems is not None else raw
        return pc.cast(value, target), problems
    if kind == "float":
        if column.type == "real":
            problems = pc.greater(pc.abs(raw), FLOAT32_MAX)
            return pc.cast(pc.if_else(problems, pa.scalar(None, pa.float64()), raw), target), problems
        return raw, None
    if kind == "bool":
        return raw, None
    key = (column.source, column.transform)
    if key not in parsed_times:
        parsed_times[key] = _timestamp_micros(column, raw)
    micros, problems = parsed_times[key]
    if kind == "date":  # the UTC day of the instant
        return pc.cast(pc.cast(micros, pa.timestamp("us")), pa.date32()), problems
    return pc.cast(micros, UTC_TIMESTAMP), problems


def _timestamp_micros(column: Column, raw: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    if column.transform in ("epoch_seconds_to_timestamp", "epoch_millis_to_timestamp"):
        scale = 1_000_000.0 if column.transform == "epoch_seconds_to_timestamp" else 1_000.0
        scaled = pc.round(pc.multiply(raw, scale), 0, "half_to_even")
        problems = pc.greater(pc.abs(scaled), float(_MAX_MICROS))
        scaled = pc.if_else(problems, pa.scalar(None, pa.float64()), scaled)
        return pc.cast(scaled, pa.int64()), problems
    if _all_utc_of_one_shape(raw):
        # The common case, every present value an ISO timestamp in UTC: one cast, no per-value regex or zone split.
        problems = pc.if_else(pc.is_valid(raw), False, pa.scalar(None, pa.bool_()))
        return pc.cast(pc.cast(raw, pa.timestamp("us", "UTC")), pa.int64()), problems
    iso = pc.match_substring_regex(raw, ISO_TIMESTAMP.pattern)
    problems = pc.invert(iso)
    text = pc.if_else(iso, raw, pa.scalar(None, pa.string()))
    zoned = pc.match_substring_regex(text, _ZONE_SUFFIX)
    with_zone = pc.cast(pc.if_else(zoned, text, pa.scalar(None, pa.string())), pa.timestamp("us", "UTC"))
    without_zone = pc.cast(pc.if_else(zoned, pa.scalar(None, pa.string()), text), pa.timestamp("us"))
    micros = pc.if_else(pc.fill_null(zoned, False), pc.cast(with_zone, pa.int64()), pc.cast(without_zone, pa.int64()))
    return micros, problems


def _utc_shape(length: int) -> str | None:
    """Return the regex of 'YYYY-MM-DD[T ]hh:mm:ss[.f]Z' values of exactly ``length`` characters, if there is one."""
    if length == 20:
        return r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}Z"
    if 22 <= length <= 30:
        return rf"\d{{4}}-\d{{2}}-\d{{2}}[T ]\d{{2}}:\d{{2}}:\d{{2}}\.\d{{{length - 21}}}Z"
    return None


def _all_utc_of_one_shape(raw: pa.Array) -> bool:
    """Tell whether every present value has one fixed-length ISO shape ending in 'Z' (a subset of ISO_TIMESTAMP).

    Values of one length lie back to back in the string data buffer, so one regex pass over that buffer checks them
    all, instead of one regex call per value.
    """
    present = len(raw) - raw.null_count
    if present == 0 or not pa.types.is_string(raw.type):
        return False
    lengths = pc.min_max(pc.binary_length(raw))
    length = lengths["min"].as_py()
    shape = _utc_shape(length) if length == lengths["max"].as_py() else None
    if shape is None:
        return False
    offsets = pa.Array.from_buffers(pa.int32(), len(raw) + 1, [None, raw.buffers()[1]], offset=raw.offset)
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    if end - start != length * present:  # null slots hold no bytes, so the buffer is exactly the present values
        return False
    data = raw.buffers()[2].slice(start, end - start)
    values = pa.Array.from_buffers(pa.binary(), 1, [None, pa.array([0, end - start], pa.int32()).buffers()[1], data])
    return bool(pc.match_substring_regex(values, f"^(?:{shape})*$")[0].as_py())


def _scalar_for(column: Column, value: Any) -> Any:
    """Turn a row-path output value into something pa.scalar accepts for the column's type."""
    if column.kind == "timestamp":
        return pa.scalar(value, pa.int64()).cast(UTC_TIMESTAMP)
    if column.kind == "date":
        return pa.scalar(value, pa.int32()).cast(pa.date32())
    return value


def _to_arrow(column: Column, values: list[Any]) -> pa.Array:
    """Build the output array of a column from row-path values."""
    if column.kind == "timestamp":
        return pa.array(values, pa.int64()).cast(UTC_TIMESTAMP)
    if column.kind == "date":
        return pa.array(values, pa.int32()).cast(pa.date32())
    return pa.array(values, output_type(column))
