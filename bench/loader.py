"""Loader benchmark: warehouse adapters against the bare tools, on the same data in the same run.

- Postgres: ``PostgresWarehouse.load_files`` (Parquet -> COPY into a staging table -> partition swap) vs
  ``psql -c "\\copy t FROM 'file.csv' CSV"`` into a plain table (the CSV written beforehand, not timed).
- DuckDB: ``DuckDBWarehouse.load_local`` (delete date + insert, one transaction) vs a bare
  ``INSERT INTO t SELECT * FROM read_parquet(...)``; both timed from opening the file to closing it.

A ratio is baseline seconds / adapter seconds (1.0 = as fast as the bare tool; goal >= 0.8).
Usage: python bench/loader.py [--quick] [--rows N] [--dsn postgresql://postgres@127.0.0.1:5432/test]
The last printed line is one JSON object: ratio_postgres_vs_psql, ratio_duckdb_vs_bare, and the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from datetime import date, datetime
from pathlib import Path

import asyncpg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.loader.warehouse.duckdb import DuckDBWarehouse
from services.loader.warehouse.postgres import PostgresWarehouse
from shared.schemas import parse_schema_yaml

DAY = date(2026, 11, 20)
SCHEMA = parse_schema_yaml(
    """
name: ad_events
version: 1
columns:
  - {name: event_id, type: varchar(64), nullable: false}
  - {name: event_type, source: type, type: varchar(32)}
  - {name: ad_id, type: varchar(128)}
  - {name: campaign_id, type: varchar(128)}
  - {name: placement, type: varchar(128)}
  - {name: user_id, type: varchar(256)}
  - {name: event_time, type: timestamp}
  - {name: received_at, type: timestamp}
  - {name: dt, source: event_time, type: date}
partition_column: dt
"""
)
DDL = ", ".join(f'"{c.name}" {c.type}' for c in SCHEMA.columns)


def _mod(values: pa.Array, modulus: int) -> pa.Array:
    return pc.subtract(values, pc.multiply(pc.divide(values, modulus), modulus))


def _prefixed(prefix: str, values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(values, pa.string()), "")


def make_data(rows: int, folder: Path) -> tuple[Path, Path]:
    """Write the same rows as Parquet (for the adapters and DuckDB) and CSV (for psql)."""
    ids = pa.array(range(rows), type=pa.int64())
    start = pa.scalar(datetime(2026, 11, 20), type=pa.timestamp("us"))
    stamps = pc.add(pc.cast(_mod(ids, 86_400_000_000), pa.duration("us")), start)
    table = pa.table(
        {
            "event_id": _prefixed("ev-", ids),
            "event_type": pc.if_else(pc.equal(_mod(ids, 20), 0), "click", "impression"),
            "ad_id": _prefixed("ad-", _mod(ids, 5000)),
            "campaign_id": _prefixed("c-", _mod(ids, 300)),
            "placement": pc.if_else(pc.equal(_mod(ids, 3), 0), "top", "side"),
            "user_id": _prefixed("u-", _mod(ids, 1_000_003)),
            "event_time": stamps,
            "received_at": stamps,
            "dt": pa.repeat(pa.scalar(DAY, type=pa.date32()), rows),
        }
    )
    parquet, csv = folder / "events.parquet", folder / "events.csv"
    pq.write_table(table, parquet, row_group_size=262_144)
    pacsv.write_csv(table, csv, write_options=pacsv.WriteOptions(include_header=False))
    return parquet, csv


async def bench_postgres(dsn: str, parquet: Path, csv: Path, reps: int) -> tuple[float, float, int]:
    """Return (best psql seconds, best adapter seconds, rows loaded)."""
    admin = await asyncpg.connect(dsn)
    name = f"hw_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        con = await asyncpg.connect(url)
        await con.execute(f"CREATE TABLE bare_events ({DDL})")
        await con.close()
        adapter = PostgresWarehouse(url)
        await adapter.ensure_table("ad_events", SCHEMA)
        bare_times, adapter_times, rows = [], [], 0
        for _ in range(reps):
            con = await asyncpg.connect(url)
            await con.execute("TRUNCATE bare_events")
            await con.close()
            started = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"\\copy bare_events FROM '{csv}' CSV"
            )
            if await proc.wait() != 0:
                raise SystemExit("psql \\copy failed")
            bare_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows = await adapter.load_files("ad_events", SCHEMA, DAY, [parquet])
            adapter_times.append(time.perf_counter() - started)
        return min(bare_times), min(adapter_times), rows
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def bench_duckdb(folder: Path, parquet: Path, reps: int) -> tuple[float, float, int]:
    """Return (best bare seconds, best adapter seconds, rows loaded); the order alternates per repetition."""
    bare_times, adapter_times, rows = [], [], 0

    def bare(rep: int) -> None:
        bare_path = folder / f"bare-{rep}.duckdb"
        with duckdb.connect(str(bare_path)) as con:
            con.execute(f"CREATE TABLE ad_events ({DDL})")
        # Both sides open the file, load and close it (closing checkpoints the WAL into the file); the
        # adapter must close at once since DuckDB allows one writing process.
        started = time.perf_counter()
        con = duckdb.connect(str(bare_path))
        con.execute(f"INSERT INTO ad_events SELECT * FROM read_parquet('{parquet}')")
        con.close()
        bare_times.append(time.perf_counter() - started)

    for rep in range(reps):
        if rep % 2 == 0:
            bare(rep)
        adapter = DuckDBWarehouse(folder / f"adapter-{rep}.duckdb")
        await adapter.ensure_table("ad_events", SCHEMA)
        started = time.perf_counter()
        rows = await adapter.load_local("ad_events", SCHEMA, DAY, [parquet])
        adapter_times.append(time.perf_counter() - started)
        if rep % 2 == 1:
            bare(rep)
    return min(bare_times), min(adapter_times), rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M rows, one repetition (under a minute)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 5_000_000)
    reps = args.reps or (1 if args.quick else 3)
    with tempfile.TemporaryDirectory(prefix="hw-bench-loader-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        parquet, csv = make_data(rows, folder)
        print(f"data: {rows} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        psql_s, pg_adapter_s, pg_rows = await bench_postgres(args.dsn, parquet, csv, reps)
        print(f"postgres: psql {psql_s:.2f}s, adapter {pg_adapter_s:.2f}s ({pg_rows} rows)", file=sys.stderr)
        bare_s, duck_adapter_s, duck_rows = await bench_duckdb(folder, parquet, reps)
        print(f"duckdb: bare {bare_s:.2f}s, adapter {duck_adapter_s:.2f}s ({duck_rows} rows)", file=sys.stderr)
    if pg_rows != rows or duck_rows != rows:
        raise SystemExit(f"row counts differ: postgres {pg_rows}, duckdb {duck_rows}, expected {rows}")
    print(
        json.dumps(
            {
                "ratio_postgres_vs_psql": round(psql_s / pg_adapter_s, 3),
                "ratio_duckdb_vs_bare": round(bare_s / duck_adapter_s, 3),
                "rows": rows,
                "reps": reps,
                "psql_s": round(psql_s, 3),
                "postgres_adapter_s": round(pg_adapter_s, 3),
                "duckdb_bare_s": round(bare_s, 3),
                "duckdb_adapter_s": round(duck_adapter_s, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
