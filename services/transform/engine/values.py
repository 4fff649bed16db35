"""Value conversion rules shared by both mapping paths: what each SQL type accepts from JSON, and the bad-row reasons.

These rules are the definition; the vectorised Arrow path must agree with them row for row (tests check it),
and the generated PySpark script implements the same rules with Spark SQL expressions.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from shared.schemas import Column

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INT_RANGES = {"smallint": (-(2**15), 2**15 - 1), "integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}
FLOAT32_MAX = 3.4028234663852886e38
# ISO-8601: date, optional time (hours, minutes, seconds, up to 9 fraction digits), optional zone; naive means UTC.
ISO_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


class FieldError(Exception):
    """A value that does not fit its column; ``kind`` is missing, type_mismatch or overflow."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def json_type(value: Any) -> str:
    """Name the JSON type of a decoded value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def parse_iso_micros(text: str) -> int | None:
    """Return microseconds since the epoch (UTC) for an ISO-8601 string, or None when it is not one."""
    match = ISO_TIMESTAMP.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    offset_s = 0
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset_s = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
    delta = moment - EPOCH
    return (delta.days * 86400 + delta.seconds - offset_s) * 1_000_000 + delta.microseconds


def micros_to_days(micros: int) -> int:
    """Return the UTC day number (days since 1970-01-01) of a timestamp in microseconds."""
    return micros // 86_400_000_000


def get_path(record: Any, steps: list[str | int]) -> Any:
    """Follow a parsed source path into a decoded JSON record; missing keys and bad indexes give None."""
    node = record
    for step in steps:
        if isinstance(step, str):
            if not isinstance(node, dict):
                return None
            node = node.get(step)
        else:
            if not isinstance(node, list) or step >= len(node):
                return None
            node = node[step]
        if node is None:
            return None
    return node


def _mismatch(column: Column, value: Any, detail: str = "") -> FieldError:
    got = f"{json_type(value)} {detail}".strip()
    return FieldError("type_mismatch", f"type mismatch: {column.name} expects {column.type}, got {got}")


def _timestamp_micros(column: Column, value: Any) -> int:
    transform = column.transform
    if transform in ("epoch_seconds_to_timestamp", "epoch_millis_to_timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _mismatch(column, value, "(expected epoch number)")
        scale = 1_000_000.0 if transform == "epoch_seconds_to_timestamp" else 1_000.0
        micros = round(float(value) * scale)
        if abs(micros) > 253_402_300_799_999_999:  # beyond 9999-12-31
            raise FieldError("overflow", f"overflow: {column.name} epoch value {value} is out of range")
        return micros
    if not isinstance(value, str):
        raise _mismatch(column, value)
    micros = parse_iso_micros(value)
    if micros is None:
        raise _mismatch(column, value, "(not an ISO-8601 timestamp)")
    return micros


def _string_value(column: Column, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        # Scalars are kept as their JSON text (Spark's JSON reader does the same for string columns).
        text = orjson.dumps(value).decode()
    else:
        raise _mismatch(column, value)
    if column.transform == "lower":
        text = text.lower()
    elif column.transform == "upper":
        text = text.upper()
    limit = column.varchar_length
    size = len(text.encode()) if limit is not None else 0
    if limit is not None and size > limit:
        raise FieldError("overflow", f"overflow: {column.name} is {size} bytes, {column.type} holds {limit}")
    return text


def _int_value(column: Column, value: Any) -> int:
    low, high = INT_RANGES[column.type]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(column, value)
    if isinstance(value, float):
        if value.is_integer() and not low <= value <= high:
            raise FieldError("overflow", f"overflow: {column.name} value {value:.0f} does not fit {column.type}")
        raise _mismatch(column, value, "with a fraction or exponent")
    if not low <= value <= high:
        raise FieldError("overflow", f"overflow: {column.name} value {value} does not fit {column.type}")
    return value


def _float_value(column: Column, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _mismatch(column, value)
    number = float(value)
    if column.type == "real" and abs(number) > FLOAT32_MAX:
        raise FieldError("overflow", f"overflow: {column.name} value {value} does not fit real")
    return number


def _decimal_value(column: Column, value: Any) -> Decimal:
    precision, scale = (int(p) for p in re.findall(r"\d+", column.type))
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _mismatch(column, value)
    try:
        number = Decimal(str(value)).quantize(Decimal(1).scaleb(-scale))
    except InvalidOperation as exc:
        raise _mismatch(column, value, "(not a decimal number)") from exc
    if len(number.as_tuple().digits) > precision:
        raise FieldError("overflow", f"overflow: {column.name} value {value} does not fit {column.type}")
    return number


def convert(column: Column, value: Any) -> Any:
    """Convert one decoded JSON value (not None) to the column's output value or raise ``FieldError``.

    Output values: str, int, float, bool, Decimal; timestamps as microseconds since the epoch (UTC, int);
    dates as days since the epoch (int).
    """
    kind = column.kind
    if kind == "string":
        return _string_value(column, value)
    if kind == "int":
        return _int_value(column, value)
    if kind == "float":
        return _float_value(column, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _mismatch(column, value)
        return value
    if kind == "decimal":
        return _decimal_value(column, value)
    if kind == "timestamp":
        return _timestamp_micros(column, value)
    # date: from an ISO date/timestamp string (or an epoch number with an epoch transform), its UTC day
    return micros_to_days(_timestamp_micros(column, value))


def default_value(column: Column) -> Any:
    """Return the column's default converted to an output value (None when it has none)."""
    if column.default is None:
        return None
    value = column.default
    if isinstance(value, datetime | date):
        value = value.isoformat()
    return convert(column, value)


def missing_reason(column: Column) -> FieldError:
    """Return the error for a required column whose source is absent or null."""
    return FieldError("missing", f"missing required field: {column.source} (column {column.name})")
