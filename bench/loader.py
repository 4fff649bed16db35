"""Loader benchmark: warehouse adapters against the bare tools, on the same data in the same run.

- Postgres: ``PostgresWarehouse.load_files`` (Parquet -> binary COPY into a staging table -> partition swap) vs
  psql's ``\\copy t FROM 'file' (FORMAT binary)`` of the same rows into a plain table -- the fair baseline, same
  wire format -- and, reported too, psql's ``\\copy ... CSV`` (the baseline of earlier runs). The binary file is
  written by psql itself (``\\copy t TO ... (FORMAT binary)``) beforehand, not timed, like the CSV.
- DuckDB: ``DuckDBWarehouse.load_local`` (delete date + insert, one transaction) vs a bare
  ``INSERT INTO t SELECT * FROM read_parquet(...)``; both timed from opening the file to closing it.

Every round runs in a fresh Python process (no warm caches or pools carried over); the order of the sides
rotates from round to round (Postgres: 3 sides, DuckDB: 2), and each figure is the median over the rounds.
A ratio is baseline seconds / adapter seconds (1.0 = as fast as the bare tool; goal >= 0.9 vs psql binary).
Usage: python bench/loader.py [--quick] [--rows N] [--rounds N] [--dsn postgresql://postgres@127.0.0.1:5432/test]
The last printed line is one JSON object: ratio_postgres_vs_psql_binary, ratio_postgres_vs_psql (CSV),
ratio_duckdb_vs_bare, and the medians and per-round timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
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


PG_SIDES = ("psql_csv", "psql_binary", "adapter")
DUCK_SIDES = ("bare", "adapter")


async def _psql(url: str, command: str) -> None:
    proc = await asyncio.create_subprocess_exec("psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", command)
    if await proc.wait() != 0:
        raise SystemExit(f"psql failed: {command}")


async def prepare_postgres(dsn: str, csv: Path, binary: Path) -> str:
    """Create a scratch database with the bare and adapter tables; write psql's binary copy of the rows."""
    admin = await asyncpg.connect(dsn)
    name = f"hw_bench_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = dsn.rsplit("/", 1)[0] + f"/{name}"
    con = await asyncpg.connect(url)
    await con.execute(f"CREATE TABLE bare_events ({DDL})")
    await con.close()
    # The binary file comes from Postgres itself, so the baseline reads exactly what COPY BINARY expects.
    await _psql(url, f"\\copy bare_events FROM '{csv}' CSV")
    await _psql(url, f"\\copy bare_events TO '{binary}' (FORMAT binary)")
    await PostgresWarehouse(url).ensure_table("ad_events", SCHEMA)
    return url


async def drop_database(dsn: str, url: str) -> None:
    """Drop the scratch database."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


async def postgres_round(url: str, parquet: Path, csv: Path, binary: Path, order: list[str]) -> dict[str, float]:
    """Time each side once, in ``order``; return seconds per side and the adapter's row count."""
    times: dict[str, float] = {}
    adapter = PostgresWarehouse(url)
    rows = 0
    for side in order:
        con = await asyncpg.connect(url)
        if side != "adapter":
            await con.execute("TRUNCATE bare_events")
        # Every side starts from a clean checkpoint, so none pays for flushing the one before it.
        await con.execute("CHECKPOINT")
        await con.close()
        started = time.perf_counter()
        if side == "psql_csv":
            await _psql(url, f"\\copy bare_events FROM '{csv}' CSV")
        elif side == "psql_binary":
            await _psql(url, f"\\copy bare_events FROM '{binary}' (FORMAT binary)")
        else:
            rows = await adapter.load_files("ad_events", SCHEMA, DAY, [parquet])
        times[side] = time.perf_counter() - started
    return {**times, "rows": rows}


async def duckdb_round(folder: Path, parquet: Path, order: list[str], tag: str) -> dict[str, float]:
    """Time the bare insert and the adapter once each, in ``order``; return seconds per side and rows."""
    times: dict[str, float] = {}
    rows = 0
    for side in order:
        if side == "bare":
            bare_path = folder / f"bare-{tag}.duckdb"
            with duckdb.connect(str(bare_path)) as con:
                con.execute(f"CREATE TABLE ad_events ({DDL})")
            # Both sides open the file, load and close it (closing checkpoints the WAL into the file); the
            # adapter must close at once since DuckDB allows one writing process.
            started = time.perf_counter()
            con = duckdb.connect(str(bare_path))
            con.execute(f"INSERT INTO ad_events SELECT * FROM read_parquet('{parquet}')")
            con.close()
            times["bare"] = time.perf_counter() - started
        else:
            adapter = DuckDBWarehouse(folder / f"adapter-{tag}.duckdb")
            await adapter.ensure_table("ad_events", SCHEMA)
            started = time.perf_counter()
            rows = await adapter.load_local("ad_events", SCHEMA, DAY, [parquet])
            times["adapter"] = time.perf_counter() - started
    return {**times, "rows": rows}


async def one_round(spec: dict) -> dict:
    """Run one round (both warehouses) as described by ``spec``; the parent starts a fresh process for it."""
    folder = Path(spec["folder"])
    parquet, csv, binary = folder / "events.parquet", folder / "events.csv", folder / "events.bin"
    pg = await postgres_round(spec["url"], parquet, csv, binary, spec["pg_order"])
    duck = await duckdb_round(folder, parquet, spec["duck_order"], str(spec["round"]))
    return {"postgres": pg, "duckdb": duck}


def _rotate(sides: tuple[str, ...], by: int) -> list[str]:
    return [sides[(i + by) % len(sides)] for i in range(len(sides))]


def _median(rounds: list[dict], engine: str, side: str) -> float:
    return statistics.median(r[engine][side] for r in rounds)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300k rows, 3 rounds (under a minute)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (>= 3 for a figure)")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--one-round", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_round:
        print(json.dumps(await one_round(json.loads(args.one_round))))
        return
    rows = args.rows or (300_000 if args.quick else 5_000_000)
    n_rounds = args.rounds or 3
    with tempfile.TemporaryDirectory(prefix="hw-bench-loader-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        _parquet, csv = make_data(rows, folder)
        url = await prepare_postgres(args.dsn, csv, folder / "events.bin")
        print(f"data: {rows} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        rounds: list[dict] = []
        try:
            for number in range(n_rounds):
                spec = {
                    "folder": str(folder),
                    "url": url,
                    "round": number,
                    "pg_order": _rotate(PG_SIDES, number),
                    "duck_order": _rotate(DUCK_SIDES, number),
                }
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--one-round", json.dumps(spec), stdout=asyncio.subprocess.PIPE
                )
                out, _ = await proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"round {number + 1} failed")
                result = json.loads(out.decode().strip().splitlines()[-1])
                result["order"] = {"postgres": spec["pg_order"], "duckdb": spec["duck_order"]}
                rounds.append(result)
                pg, duck = result["postgres"], result["duckdb"]
                print(
                    f"round {number + 1}: postgres csv {pg['psql_csv']:.2f}s binary {pg['psql_binary']:.2f}s "
                    f"adapter {pg['adapter']:.2f}s | duckdb bare {duck['bare']:.2f}s adapter {duck['adapter']:.2f}s",
                    file=sys.stderr,
                )
        finally:
            await drop_database(args.dsn, url)
    bad = [r for r in rounds if r["postgres"]["rows"] != rows or r["duckdb"]["rows"] != rows]
    if bad:
        raise SystemExit(f"row counts differ from {rows}: {bad}")
    med = {
        "psql_csv_s": _median(rounds, "postgres", "psql_csv"),
        "psql_binary_s": _median(rounds, "postgres", "psql_binary"),
        "postgres_adapter_s": _median(rounds, "postgres", "adapter"),
        "duckdb_bare_s": _median(rounds, "duckdb", "bare"),
        "duckdb_adapter_s": _median(rounds, "duckdb", "adapter"),
    }
    print(
        json.dumps(
            {
                "ratio_postgres_vs_psql_binary": round(med["psql_binary_s"] / med["postgres_adapter_s"], 3),
                "ratio_postgres_vs_psql": round(med["psql_csv_s"] / med["postgres_adapter_s"], 3),
                "ratio_duckdb_vs_bare": round(med["duckdb_bare_s"] / med["duckdb_adapter_s"], 3),
                "rows": rows,
                "rounds": n_rounds,
                **{key: round(value, 3) for key, value in med.items()},
                "per_round": [
                    {
                        engine: {k: round(v, 3) if isinstance(v, float) else v for k, v in r[engine].items()}
                        for engine in ("postgres", "duckdb")
                    }
                    | {"order": r["order"]}
                    for r in rounds
                ],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
