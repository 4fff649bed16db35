"""Encode Arrow record batches as PostgreSQL binary COPY data with vectorised Arrow compute (no Python loop
over rows): each column becomes a binary array of "<int32 length><big-endian value>" (or length -1 for
NULL), and a row is the element-wise concatenation of its fields behind the int16 field count.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.loader.warehouse.threadstream import Emit, stream_from_thread

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_NULL = b"\xff\xff\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_US = _PG_EPOCH_DAYS * 86_400 * 1_000_000


def _swap(values: pa.Array, width: int) -> pa.Array:
    """Byte-swap unsigned integers of ``width`` bytes (little-endian host -> network order)."""
    unsigned = {2: pa.uint16(), 4: pa.uint32(), 8: pa.uint64()}[width]
    values = values.view(unsigned) if values.type != unsigned else values
    out = None
    for index in range(width):
        byte = pc.bit_wise_and(pc.shift_right(values, pa.scalar(8 * index, unsigned)), pa.scalar(0xFF, unsigned))
        moved = pc.shift_left(byte, pa.scalar(8 * (width - 1 - index), unsigned))
        out = moved if out is None else pc.bit_wise_or(out, moved)
    return out


def _fixed(values: pa.Array, width: int) -> pa.Array:
    """Return big-endian fixed-width values as a binary array (one element per value)."""
    swapped = _swap(values, width)
    raw = pa.Array.from_buffers(pa.binary(width), len(swapped), [None, swapped.buffers()[1]], offset=swapped.offset)
    return raw.cast(pa.binary())


def _with_length(payload: pa.Array, lengths: pa.Array | int, nulls: pa.Array | None) -> pa.Array:
    if isinstance(lengths, int):
        prefix: pa.Array | pa.Scalar = pa.scalar(lengths.to_bytes(4, "big"), pa.binary())
    else:
        prefix = _fixed(pc.cast(lengths, pa.int32()).view(pa.uint32()), 4)
    joined = pc.binary_join_element_wise(prefix, payload, pa.scalar(b"", pa.binary()))
    if nulls is None or nulls.false_count == len(nulls):
        return joined
    return pc.if_else(nulls, pa.scalar(_NULL, pa.binary()), joined)


def _fill(array: pa.Array, value: object) -> pa.Array:
    return pc.fill_null(array, pa.scalar(value, array.type)) if array.null_count else array


def encode_column(array: pa.Array, sql_type: str) -> pa.Array:
    """Encode one column for a Postgres column of ``sql_type``; raise TypeError when it is not supported."""
    nulls = pc.is_null(array) if array.null_count else None
    base = sql_type.split("(")[0].strip()
    if base in ("varchar", "char"):
        text = _fill(pc.cast(array, pa.string()), "").cast(pa.binary())
        return _with_length(text, pc.binary_length(text), nulls)
    if base == "timestamp":
        micros = pc.cast(pc.cast(array, pa.timestamp("us", tz=getattr(array.type, "tz", None))), pa.int64())
        micros = pc.subtract(_fill(micros, 0), pa.scalar(_PG_EPOCH_US, pa.int64()))
        return _with_length(_fixed(micros.view(pa.uint64()), 8), 8, nulls)
    if base == "date":
        days = pc.subtract(
            _fill(pc.cast(pc.cast(array, pa.date32()), pa.int32()), 0), pa.scalar(_PG_EPOCH_DAYS, pa.int32())
        )
        return _with_length(_fixed(days.view(pa.uint32()), 4), 4, nulls)
    widths = {
        "smallint": (pa.int16(), pa.uint16(), 2),
        "integer": (pa.int32(), pa.uint32(), 4),
        "bigint": (pa.int64(), pa.uint64(), 8),
        "real": (pa.float32(), pa.uint32(), 4),
        "double precision": (pa.float64(), pa.uint64(), 8),
    }
    if sql_type in widths:
        arrow_type, unsigned, width = widths[sql_type]
        values = _fill(pc.cast(array, arrow_type), 0)
        return _with_length(_fixed(values.view(unsigned), width), width, nulls)
    if base == "boolean":
        as_bytes = pc.if_else(_fill(pc.cast(array, pa.bool_()), False), pa.scalar(b"\x01"), pa.scalar(b"\x00"))
        return _with_length(as_bytes.cast(pa.binary()), 1, nulls)
    raise TypeError(f"no binary encoding for {sql_type}")


def supports(sql_types: Sequence[str]) -> bool:
    """Return whether every column type has a binary encoding here (decimal has not)."""
    return all(not t.startswith("decimal") for t in sql_types)


def encode_batch(columns: Sequence[pa.Array], sql_types: Sequence[str]) -> bytes:
    """Return the binary COPY tuples of one batch (no signature, no trailer)."""
    header = pa.scalar(len(columns).to_bytes(2, "big"), pa.binary())
    fields = [encode_column(column, sql_type) for column, sql_type in zip(columns, sql_types, strict=True)]
    rows = pc.binary_join_element_wise(header, *fields, pa.scalar(b"", pa.binary()))
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    offsets = pa.Array.from_buffers(pa.int32(), len(rows) + 1, [None, rows.buffers()[1]], offset=rows.offset)
    start, end = offsets[0].as_py(), offsets[len(rows)].as_py()
    return rows.buffers()[2][start:end].to_pybytes()


def _produce(
    files: Sequence[Path],
    columns: Sequence[str],
    sql_types: Sequence[str],
    partition: str,
    dt: date,
    batch_rows: int,
    emit: Emit,
) -> None:
    from services.loader.warehouse.arrowcsv import shape_batch

    emit(SIGNATURE)
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            shaped = shape_batch(batch, columns, partition, dt)
            emit(encode_batch([shaped.column(i).combine_chunks() for i in range(shaped.num_columns)], sql_types))
    emit(TRAILER)


async def binary_chunks(
    files: Sequence[Path],
    columns: Sequence[str],
    sql_types: Sequence[str],
    partition: str,
    dt: date,
    batch_rows: int = 65_536,
) -> AsyncIterator[bytes]:
    """Yield binary COPY data for the files' rows; encoding runs in a thread, overlapping with the consumer."""
    async for chunk in stream_from_thread(
        functools.partial(_produce, files, columns, sql_types, partition, dt, batch_rows)
    ):
        yield chunk
