"""Stream Parquet files as CSV chunks shaped to a warehouse table (column order, missing columns, the date)."""

from __future__ import annotations

import functools
import io
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.loader.warehouse.threadstream import Emit, stream_from_thread


def shape_batch(batch: pa.RecordBatch, columns: Sequence[str], partition: str, dt: date) -> pa.Table:
    """Return the batch with exactly ``columns``, in order: missing ones null, the partition column filled."""
    names = set(batch.schema.names)
    arrays = []
    for name in columns:
        if name in names:
            arrays.append(batch.column(name))
        elif name == partition:
            arrays.append(pa.array([dt] * batch.num_rows, type=pa.date32()))
        else:
            arrays.append(pa.nulls(batch.num_rows, type=pa.string()))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _produce(
    files: Sequence[Path], columns: Sequence[str], partition: str, dt: date, batch_rows: int, emit: Emit
) -> None:
    options = pacsv.WriteOptions(include_header=False)
    for path in files:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=batch_rows):
            sink = io.BytesIO()
            pacsv.write_csv(shape_batch(batch, columns, partition, dt), sink, write_options=options)
            emit(sink.getvalue())


async def csv_chunks(
    files: Sequence[Path], columns: Sequence[str], partition: str, dt: date, batch_rows: int = 131_072
) -> AsyncIterator[bytes]:
    """Yield CSV chunks of the files' rows; encoding runs in a thread, overlapping with the consumer."""
    async for chunk in stream_from_thread(functools.partial(_produce, files, columns, partition, dt, batch_rows)):
        yield chunk
