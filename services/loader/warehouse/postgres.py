"""Postgres warehouse: asyncpg binary COPY into a staging table, then swap it in as the date's partition.

The table is ``PARTITION BY LIST`` on the partition column. A date loads into a fresh staging table (binary
COPY encoded from the Parquet files with Arrow compute; CSV for tables with numeric columns) that carries a
CHECK proving its date (so attaching needs no scan), and in one transaction the old partition of that date is
dropped and the staging table attached in its place: a re-load of a date replaces it exactly once, and
readers see old or new rows, never both.
"""

from __future__ import annotations

import secrets
import tempfile
from datetime import date
from pathlib import Path

import asyncpg

from services.loader.warehouse import arrowbinary
from services.loader.warehouse.arrowcsv import csv_chunks
from services.loader.warehouse.base import (
    DEFAULT_PARTITION_COLUMN,
    LoadInput,
    partition_column,
    quote,
    table_columns,
)
from shared.schemas import TableSchema

# information_schema data_type -> the schema's SQL type names (lengths do not matter to the encoders).
_PG_TYPES = {
    "character varying": "varchar",
    "character": "char",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp",
    "numeric": "decimal",
    "text": "varchar",
}


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def partition_name(table: str, dt: date) -> str:
    """Return the partition table of ``dt`` (within Postgres's 63-character identifiers)."""
    return f"{table[:48]}__p{dt:%Y%m%d}"


class PostgresWarehouse:
    """A Postgres database as the warehouse."""

    name = "postgres"

    def __init__(self, url: str, *, scratch_dir: Path | None = None) -> None:
        self.dsn = _dsn(url)
        self.scratch_dir = scratch_dir

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn)

    @staticmethod
    async def _existing_columns(con: asyncpg.Connection, table: str) -> list[str]:
        rows = await con.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [row["column_name"] for row in rows]

    @staticmethod
    async def _column_types(con: asyncpg.Connection, table: str) -> list[tuple[str, str]]:
        rows = await con.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [(row["column_name"], _PG_TYPES.get(row["data_type"], row["data_type"])) for row in rows]

    async def _ensure(self, con: asyncpg.Connection, table: str, schema: TableSchema) -> list[str]:
        existing = await self._existing_columns(con, table)
        columns = table_columns(schema)
        if not existing:
            ddl = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
            by = quote(partition_column(schema))
            await con.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} ({ddl}) PARTITION BY LIST ({by})")
            return [name for name, _ in columns]
        added = []
        for name, sql_type in columns:
            if name not in existing:
                await con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {quote(name)} {sql_type}")
                added.append(name)
        return added

    async def ensure_table(self, table: str, schema: TableSchema) -> list[str]:
        """Create the partitioned table or add the schema's new columns (never drop); return columns added."""
        con = await self._connect()
        try:
            return await self._ensure(con, table, schema)
        finally:
            await con.close()

    async def load_files(self, table: str, schema: TableSchema, dt: date, files: list[Path]) -> int:
        """Load local Parquet files as ``dt``'s partition; return rows loaded."""
        part = partition_column(schema)
        con = await self._connect()
        stage = f"{table[:40]}__s{dt:%Y%m%d}_{secrets.token_hex(3)}"
        try:
            await self._ensure(con, table, schema)
            typed = await self._column_types(con, table)
            columns = [name for name, _ in typed]
            sql_types = [sql_type for _, sql_type in typed]
            literal = dt.isoformat()
            # The CHECK proves the partition bound, so ATTACH needs no validation scan; COPY checks row by row.
            await con.execute(
                f"CREATE TABLE {quote(stage)} (LIKE {quote(table)} INCLUDING DEFAULTS, "
                f"CONSTRAINT {quote(stage + '_dt')} "
                f"CHECK ({quote(part)} IS NOT NULL AND {quote(part)} = DATE '{literal}'))"
            )
            try:
                if arrowbinary.supports(sql_types):
                    source = arrowbinary.binary_chunks(files, columns, sql_types, part, dt)
                    result = await con.copy_to_table(stage, source=source, columns=columns, format="binary")
                else:  # numeric has no vectorised binary encoding here: CSV it is
                    result = await con.copy_to_table(
                        stage, source=csv_chunks(files, columns, part, dt), columns=columns, format="csv"
                    )
                rows = int(result.split()[-1])
                target = partition_name(table, dt)
                async with con.transaction():
                    await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", target)
                    await con.execute(f"DROP TABLE IF EXISTS {quote(target)}")
                    await con.execute(f"ALTER TABLE {quote(stage)} RENAME TO {quote(target)}")
                    await con.execute(
                        f"ALTER TABLE {quote(table)} ATTACH PARTITION {quote(target)} FOR VALUES IN ('{literal}')"
                    )
            except BaseException:
                await con.execute(f"DROP TABLE IF EXISTS {quote(stage)}")
                raise
            return rows
        finally:
            await con.close()

    async def load_date(self, table: str, schema: TableSchema, dt: date, data: LoadInput) -> int:
        """Download the date's Parquet files and swap them in as its partition; return rows loaded."""
        if self.scratch_dir is not None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch_dir) as tmp:
            files = await data.download(Path(tmp))
            return await self.load_files(table, schema, dt, files)

    async def delete_date(self, table: str, schema: TableSchema, dt: date) -> int:
        """Drop ``dt``'s partition; return the rows it held."""
        con = await self._connect()
        try:
            target = partition_name(table, dt)
            exists = await con.fetchval("SELECT to_regclass($1) IS NOT NULL", quote(target))
            if not exists:
                return 0
            rows = await con.fetchval(f"SELECT count(*) FROM {quote(target)}")
            await con.execute(f"DROP TABLE IF EXISTS {quote(target)}")
            return int(rows)
        finally:
            await con.close()

    async def count(self, table: str, dt: date | None = None, column: str = DEFAULT_PARTITION_COLUMN) -> int:
        """Count rows (of ``dt`` when given); 0 when the table does not exist."""
        con = await self._connect()
        try:
            if not await con.fetchval("SELECT to_regclass($1) IS NOT NULL", quote(table)):
                return 0
            if dt is None:
                return int(await con.fetchval(f"SELECT count(*) FROM {quote(table)}"))
            return int(await con.fetchval(f"SELECT count(*) FROM {quote(table)} WHERE {quote(column)} = $1", dt))
        finally:
            await con.close()

    async def maintain(self, table: str) -> None:
        """VACUUM ANALYZE the table (all its partitions)."""
        con = await self._connect()
        try:
            if await con.fetchval("SELECT to_regclass($1) IS NOT NULL", quote(table)):
                await con.execute(f"VACUUM ANALYZE {quote(table)}")
        finally:
            await con.close()
