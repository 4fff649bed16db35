"""DuckDB warehouse (the embedded default): loads the manifest's Parquet files directly.

DuckDB allows one writing process per file, so the file is opened per operation and closed at once;
within a process a lock serialises access, and readers in other processes retry while a writer holds it.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from services.loader.warehouse.base import (
    DEFAULT_PARTITION_COLUMN,
    LoadInput,
    partition_column,
    quote,
    table_columns,
)
from shared.schemas import TableSchema

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path.resolve()), threading.Lock())


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBWarehouse:
    """A DuckDB file as the warehouse."""

    name = "duckdb"

    def __init__(self, path: Path, *, scratch_dir: Path | None = None, open_timeout_s: float = 10.0) -> None:
        self.path = path
        self.scratch_dir = scratch_dir or path.parent / "scratch"
        self.open_timeout_s = open_timeout_s

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if read_only and not self.path.exists():
            raise FileNotFoundError(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.open_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException):
                # Another process holds the write lock: wait for it to close the file.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            # Timestamps with a zone (UTC from transform) are stored as UTC wall-clock, whatever the host's zone.
            con.execute("SET TimeZone = 'UTC'")
            return con

    def _run(self, fn, *, read_only: bool = False):  # type: ignore[no-untyped-def]
        with _lock_for(self.path):
            con = self._connect(read_only)
            try:
                return fn(con)
            finally:
                con.close()

    @staticmethod
    def _existing_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        rows = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [table],
        ).fetchall()
        return [row[0] for row in rows]

    def _ensure(self, con: duckdb.DuckDBPyConnection, table: str, schema: TableSchema) -> list[str]:
        existing = self._existing_columns(con, table)
        columns = table_columns(schema)
        if not existing:
            ddl = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in columns)
            con.execute(f"CREATE TABLE IF NOT EXISTS {quote(table)} ({ddl})")
            return [name for name, _ in columns]
        added = []
        for name, sql_type in columns:
            if name not in existing:
                con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {sql_type}")
                added.append(name)
        return added

    async def ensure_table(self, table: str, schema: TableSchema) -> list[str]:
        """Create the table or add the schema's new columns; return the columns added."""
        return await asyncio.to_thread(self._run, lambda con: self._ensure(con, table, schema))

    def _load(self, table: str, schema: TableSchema, dt: date, files: list[Path]) -> int:
        part = partition_column(schema)
        schemas = [pq.read_schema(path) for path in files]
        available = {name for file_schema in schemas for name in file_schema.names}
        # Files written alike are read positionally (faster); differing ones are matched by column name.
        by_name = ", union_by_name = true" if any(not sc.equals(schemas[0]) for sc in schemas[1:]) else ""

        def _work(con: duckdb.DuckDBPyConnection) -> int:
            self._ensure(con, table, schema)
            targets = self._existing_columns(con, table)
            selects = []
            for name in targets:
                if name in available:
                    selects.append(quote(name))
                elif name == part:
                    selects.append(f"DATE {_literal(dt.isoformat())}")
                else:
                    selects.append("NULL")
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DELETE FROM {quote(table)} WHERE {quote(part)} = ?", [dt])
                loaded = 0
                if files:
                    sources = "[" + ", ".join(_literal(str(path)) for path in files) + "]"
                    inserted = con.execute(
                        f"INSERT INTO {quote(table)} ({', '.join(quote(n) for n in targets)}) "
                        f"SELECT {', '.join(selects)} FROM read_parquet({sources}{by_name})"
                    ).fetchone()
                    loaded = int(inserted[0]) if inserted else 0
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return loaded

        return self._run(_work)

    async def load_date(self, table: str, schema: TableSchema, dt: date, data: LoadInput) -> int:
        """Replace ``dt``'s rows with the Parquet files' rows in one transaction; return rows loaded."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.scratch_dir) as tmp:
            files = await data.download(Path(tmp))
            return await asyncio.to_thread(self._load, table, schema, dt, files)

    async def load_local(self, table: str, schema: TableSchema, dt: date, files: list[Path]) -> int:
        """Load Parquet files already on local disk (benchmarks, tools)."""
        return await asyncio.to_thread(self._load, table, schema, dt, files)

    async def delete_date(self, table: str, schema: TableSchema, dt: date) -> int:
        """Delete ``dt``'s rows; return how many."""
        part = partition_column(schema)

        def _work(con: duckdb.DuckDBPyConnection) -> int:
            if not self._existing_columns(con, table):
                return 0
            row = con.execute(f"SELECT count(*) FROM {quote(table)} WHERE {quote(part)} = ?", [dt]).fetchone()
            con.execute(f"DELETE FROM {quote(table)} WHERE {quote(part)} = ?", [dt])
            return int(row[0]) if row else 0

        return await asyncio.to_thread(self._run, _work)

    async def count(self, table: str, dt: date | None = None, column: str = DEFAULT_PARTITION_COLUMN) -> int:
        """Count rows (of ``dt`` when given), opening the file read-only; 0 when the table does not exist."""

        def _work(con: duckdb.DuckDBPyConnection) -> int:
            if not self._existing_columns(con, table):
                return 0
            if dt is None:
                row = con.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()
            else:
                row = con.execute(f"SELECT count(*) FROM {quote(table)} WHERE {quote(column)} = ?", [dt]).fetchone()
            return int(row[0]) if row else 0

        try:
            return await asyncio.to_thread(self._run, _work, read_only=True)
        except FileNotFoundError:
            return 0

    async def fetch(self, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
        """Run a read-only query (waiting for this process's writers and retrying other processes' locks)."""
        return await asyncio.to_thread(self._run, lambda con: con.execute(sql, params or []).fetchall(), read_only=True)

    async def maintain(self, table: str) -> None:
        """Refresh statistics and reclaim space (DuckDB's ANALYZE and CHECKPOINT)."""

        def _work(con: duckdb.DuckDBPyConnection) -> None:
            if self._existing_columns(con, table):
                con.execute(f"ANALYZE {quote(table)}")
                con.execute("CHECKPOINT")

        await asyncio.to_thread(self._run, _work)
