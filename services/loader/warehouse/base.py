"""The warehouse adapter interface: one per backend, chosen per job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from shared.schemas import TableSchema

DEFAULT_PARTITION_COLUMN = "dt"


@dataclass
class LoadInput:
    """What one date's load reads: the manifest in S3 and a way to fetch its files locally as Parquet.

    ``file_format`` is what the manifest's parts are in S3 (``parquet`` or ``orc``): ``download`` always yields
    Parquet (ORC parts are rewritten, see ``shared.orcparts``); Redshift's COPY reads either format natively.
    """

    manifest_url: str
    expected_rows: int | None
    download: Callable[[Path], Awaitable[list[Path]]]
    file_format: str = "parquet"


def partition_column(schema: TableSchema) -> str:
    """Return the column a date's rows are found by."""
    return schema.partition_column or DEFAULT_PARTITION_COLUMN


def table_columns(schema: TableSchema) -> list[tuple[str, str]]:
    """Return (name, SQL type) for the table: the schema's columns plus the partition column if missing."""
    columns = [(column.name, column.type) for column in schema.columns]
    part = partition_column(schema)
    if part not in {name for name, _ in columns}:
        columns.append((part, "date"))
    return columns


def quote(identifier: str) -> str:
    """Quote an identifier (names are validated upstream; quoting keeps reserved words safe)."""
    return '"' + identifier.replace('"', '""') + '"'


class WarehouseAdapter(Protocol):
    """Load Parquet dates into a table, delete and count them, and keep the table healthy."""

    name: str

    async def ensure_table(self, table: str, schema: TableSchema) -> list[str]:
        """Create the table or add the schema's new columns (never drop); return the columns added."""
        ...

    async def load_date(self, table: str, schema: TableSchema, dt: date, data: LoadInput) -> int:
        """Replace ``dt``'s rows with the input's rows, exactly once; return the rows loaded."""
        ...

    async def delete_date(self, table: str, schema: TableSchema, dt: date) -> int:
        """Delete ``dt``'s rows; return how many were deleted."""
        ...

    async def count(self, table: str, dt: date | None = None, column: str = DEFAULT_PARTITION_COLUMN) -> int:
        """Return the number of rows (of ``dt`` when given)."""
        ...

    async def maintain(self, table: str) -> None:
        """Run the backend's VACUUM/ANALYZE equivalent."""
        ...
