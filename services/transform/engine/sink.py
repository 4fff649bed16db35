"""Write mapped rows to rolling columnar part files, and bad rows to a gzip JSON-lines file, on local disk.

What the part files follow, so that outside readers read them right (shared/contracts.py, contract 3):

- Timestamps are UTC instants: ``timestamp[us, tz=UTC]``, Parquet ``isAdjustedToUTC=true`` (DuckDB reads
  TIMESTAMP WITH TIME ZONE, Spark TIMESTAMP in its session zone, pyarrow ``tz=UTC``).
- Hive's partition convention: the day lives in the path (``<table>/v<n>/dt=YYYY-MM-DD/``), never as a column of
  the files (``arrow_types.file_columns``), so no reader has two ``dt`` to merge.

What each default reader makes of that day (tests/transform/test_partition_inference.py pins it, for pyarrow 26,
DuckDB 2.0 and Spark 4.3): DuckDB (``hive_partitioning = true``, ``hive_types_autocast`` on by default) and Spark
(``partitionColumnTypeInference`` on by default) type ``dt`` as DATE; pyarrow's ``partitioning="hive"`` discovers
only int32 or string, so it types ``dt`` as a string. pyarrow gets the DATE with
``ds.dataset(path, partitioning=ds.partitioning(pa.schema([("dt", pa.date32())]), flavor="hive"))``.
No layout with a directory per day gives all three the same type with their defaults: ``dt`` in the file as well
fails pyarrow's merge (date32 vs string); ``dt`` only in the file under a plain day directory is not read by Spark
(it reads files in the root or in ``key=value`` directories only); a non-ISO value (``dt=2026_11_24``) is a string
in all three but no longer a date for anyone. Only flat files (``dt`` in the file, no day directory) agree on DATE
in all three, and they would give up what a day directory carries: the day's manifest and atomic publish, the
Glue partition's location and the loader's per-day reloads. ``_common_metadata``/``_metadata`` declaring
``dt: date32`` do not help: pyarrow's and DuckDB's default discovery ignore them (Spark, which may read one for
the file schema, types ``dt`` as DATE already). A ``hour=HH`` level is int32 in pyarrow and Spark but BIGINT in
DuckDB; a table with both daily and hourly parts is refused by DuckDB ("Hive partition mismatch") and Spark
(conflicting partition column names).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.orc as orc
import pyarrow.parquet as pq

from services.transform.engine.mapping import BadRow

OutputFormat = Literal["parquet", "orc"]


@dataclass
class PartFile:
    """One finished part file."""

    path: Path
    rows: int

    @property
    def size(self) -> int:
        """Return the file size in bytes."""
        return self.path.stat().st_size


def dictionary_columns(sample: pa.Table, ratio: float = 0.1) -> list[str]:
    """Return the columns worth dictionary-encoding: few distinct values in the first rows.

    High-cardinality columns (ids, timestamps) only waste a dictionary attempt; without it they encode faster and,
    with zstd, smaller.
    """
    sample = sample.slice(0, 20_000)
    limit = max(1, int(sample.num_rows * ratio))
    return [name for name in sample.column_names if pc.count_distinct(sample.column(name), mode="all").as_py() <= limit]


def statistics_columns(schema: pa.Schema, dictionary: list[str]) -> list[str]:
    """Return the columns worth min/max statistics: all but high-cardinality strings.

    The min/max of a column of ids or free text spans almost the whole range in every row group, so it prunes
    nothing for a reader, while computing it costs a string comparison per value.
    """
    return [f.name for f in schema if f.name in dictionary or not pa.types.is_string(f.type)]


class PartWriter:
    """Append tables to ``part-NNNNN.<ext>`` files in a directory, starting a new part every ``rows_per_part``."""

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        output_format: OutputFormat = "parquet",
        compression: str = "zstd",
        rows_per_part: int = 5_000_000,
        row_group_rows: int = 128 * 1024,
    ) -> None:
        self.directory = directory
        self.schema = schema
        self.output_format = output_format
        self.compression = compression
        self.rows_per_part = rows_per_part
        self.row_group_rows = row_group_rows
        self.parts: list[PartFile] = []
        self._writer: Any = None
        self._rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._dictionary: list[str] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def extension(self) -> str:
        """Return the part file extension."""
        return "parquet" if self.output_format == "parquet" else "orc"

    def write(self, table: pa.Table) -> list[PartFile]:
        """Buffer rows and write whole row groups; return parts finished by this call."""
        finished: list[PartFile] = []
        while table.num_rows:
            room = self.rows_per_part - self._rows - self._buffered
            head, table = table.slice(0, room), table.slice(room)
            self._buffer.append(head)
            self._buffered += head.num_rows
            if self._buffered >= self.row_group_rows:
                self._flush()
            if self._rows + self._buffered >= self.rows_per_part:
                finished.extend(self._close_part())
        return finished

    def close(self) -> list[PartFile]:
        """Write what is buffered and close the current part; return parts finished by this call."""
        return self._close_part()

    def _flush(self) -> None:
        if not self._buffered:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        if self._writer is None:
            path = self.directory / f"part-{len(self.parts):05d}.{self.extension}"
            if self.output_format == "parquet":
                self._dictionary = self._dictionary if self._dictionary is not None else dictionary_columns(table)
                self._writer = pq.ParquetWriter(
                    path,
                    self.schema,
                    compression=self.compression,
                    use_dictionary=self._dictionary,
                    write_statistics=statistics_columns(self.schema, self._dictionary),
                )
            else:
                self._writer = orc.ORCWriter(path, compression=self.compression)
            self._path = path
        if self.output_format == "parquet":
            self._writer.write_table(table, row_group_size=self.row_group_rows)
        else:
            self._writer.write(table)
        self._rows += table.num_rows

    def _close_part(self) -> list[PartFile]:
        self._flush()
        if self._writer is None:
            return []
        self._writer.close()
        part = PartFile(self._path, self._rows)
        self.parts.append(part)
        self._writer, self._rows = None, 0
        return [part]


class BadRowWriter:
    """Stream bad rows to a gzip JSON-lines file (opened on the first bad row)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: Any = None

    def write(self, rows: list[BadRow]) -> None:
        """Append bad rows."""
        if not rows:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = gzip.open(self.path, "wb", compresslevel=6)
        for row in rows:
            self._file.write(orjson.dumps(row.to_json(), default=str) + b"\n")
        self.count += len(rows)

    def close(self) -> None:
        """Finish the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
