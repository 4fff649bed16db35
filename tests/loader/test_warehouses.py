"""Warehouse adapters: exactly-once re-loads, schema evolution (add, never drop), deletes, and a full
lifecycle with both the metadata DB and the warehouse on real Postgres."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.loader.warehouse.duckdb import DuckDBWarehouse
from services.loader.warehouse.postgres import PostgresWarehouse
from shared.schemas import parse_schema_yaml
from tests.loader.fake_transform import AD_EVENTS_V2_YAML, AD_EVENTS_YAML, FakeTransform
from tests.loader.test_lifecycle import DAYS, job_body, wait_states
from tests.loader.test_runs import _start

V1 = parse_schema_yaml(AD_EVENTS_YAML)
V2 = parse_schema_yaml(AD_EVENTS_V2_YAML)
DAY = date(2026, 11, 20)


def parquet_rows(path: Path, day: date, n: int, prefix: str, *, country: bool = False) -> Path:
    rows = [
        {
            "event_id": f"{prefix}{i}",
            "event_type": "impression",
            "ad_id": "ad-1",
            "campaign_id": "c",
            "placement": "p",
            "user_id": None,
            "dt": day,
            **({"country": "NZ"} if country else {}),
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(params=["duckdb", "postgres"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "duckdb":
        return DuckDBWarehouse(tmp_path / "wh.duckdb")
    return PostgresWarehouse(request.getfixturevalue("postgres_url"))


async def _load(adapter: Any, schema: Any, day: date, files: list[Path]) -> int:
    if isinstance(adapter, DuckDBWarehouse):
        return await adapter.load_local("ad_events", schema, day, files)
    return await adapter.load_files("ad_events", schema, day, files)


async def test_reloading_a_date_replaces_it_exactly_once(adapter: Any, tmp_path: Path) -> None:
    other = date(2026, 11, 21)
    assert await _load(adapter, V1, DAY, [parquet_rows(tmp_path / "a.parquet", DAY, 30, "a")]) == 30
    assert await _load(adapter, V1, other, [parquet_rows(tmp_path / "b.parquet", other, 5, "b")]) == 5
    files = [parquet_rows(tmp_path / "c.parquet", DAY, 12, "c"), parquet_rows(tmp_path / "d.parquet", DAY, 7, "d")]
    assert await _load(adapter, V1, DAY, files) == 19
    assert await adapter.count("ad_events", DAY) == 19
    assert await adapter.count("ad_events", other) == 5
    assert await adapter.count("ad_events") == 24
    assert await adapter.delete_date("ad_events", V1, DAY) == 19
    assert await adapter.count("ad_events") == 5
    await adapter.maintain("ad_events")


async def test_a_new_schema_version_adds_columns_and_never_drops_them(adapter: Any, tmp_path: Path) -> None:
    await _load(adapter, V1, DAY, [parquet_rows(tmp_path / "a.parquet", DAY, 3, "a")])
    assert await adapter.ensure_table("ad_events", V2) == ["country"]
    other = date(2026, 11, 21)
    await _load(adapter, V2, other, [parquet_rows(tmp_path / "b.parquet", other, 4, "b", country=True)])
    # Loading with the old version again keeps the new column (null for those rows).
    await _load(adapter, V1, DAY, [parquet_rows(tmp_path / "c.parquet", DAY, 2, "c")])
    assert await adapter.ensure_table("ad_events", V1) == []
    assert await adapter.count("ad_events") == 6
    if isinstance(adapter, DuckDBWarehouse):
        import duckdb

        with duckdb.connect(str(adapter.path), read_only=True) as con:
            countries = con.execute("SELECT dt, count(country) FROM ad_events GROUP BY dt ORDER BY dt").fetchall()
        assert countries == [(DAY, 0), (other, 4)]


@pytest.mark.on_postgres
async def test_a_postgres_job_loads_days_with_metadata_and_warehouse_on_postgres(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: Any
) -> None:
    assert wiring.settings.database_url.startswith("postgresql+asyncpg://")
    job_id = await _start(client, aws, wiring, warehouse="postgres")
    runs = await wait_states(client, job_id, {d.isoformat(): "loaded" for d in DAYS})
    for day, ads in DAYS.items():
        expected = sum(i + c for i, c in ads.values())
        assert runs[day.isoformat()]["rows_loaded"] == expected
        count = await client.get(
            "/v1/warehouse/ad_events/count", params={"dt": day.isoformat(), "warehouse": "postgres"}
        )
        assert count.json()["rows"] == expected
    assert job_body()["name"] == (await client.get(f"/v1/jobs/{job_id}")).json()["name"]


async def test_zoned_timestamps_are_stored_as_utc_wall_clock(adapter: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import asyncpg
    import duckdb

    stamp = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    table = pa.table(
        {
            "event_id": ["e1"],
            "event_time": pa.array([stamp], type=pa.timestamp("us", tz="UTC")),
            "dt": pa.array([DAY], type=pa.date32()),
        }
    )
    pq.write_table(table, tmp_path / "tz.parquet")
    assert await _load(adapter, V1, DAY, [tmp_path / "tz.parquet"]) == 1
    if isinstance(adapter, DuckDBWarehouse):
        with duckdb.connect(str(adapter.path), read_only=True) as con:
            stored = con.execute("SELECT event_time FROM ad_events").fetchone()[0]
    else:
        con = await asyncpg.connect(adapter.dsn)
        stored = await con.fetchval("SELECT event_time FROM ad_events")
        await con.close()
    assert stored == datetime(2026, 11, 20, 23, 30)


TYPES_YAML = """\
name: typed
version: 1
columns:
  - {name: s, type: varchar(16)}
  - {name: h, type: smallint}
  - {name: i, type: integer}
  - {name: b, type: bigint}
  - {name: r, type: real}
  - {name: d, type: double precision}
  - {name: f, type: boolean}
  - {name: t, type: timestamp}
  - {name: dt, type: date}
partition_column: dt
"""


async def test_postgres_binary_copy_keeps_every_type_and_null(postgres_url: str, tmp_path: Path) -> None:
    from datetime import datetime

    import asyncpg

    schema = parse_schema_yaml(TYPES_YAML)
    rows = [
        {
            "s": "héllo",
            "h": -2,
            "i": 70000,
            "b": -(2**40),
            "r": 1.5,
            "d": -2.25,
            "f": True,
            "t": datetime(1999, 12, 31, 23, 59, 59, 123456),
            "dt": DAY,
        },
        {"s": None, "h": None, "i": None, "b": None, "r": None, "d": None, "f": None, "t": None, "dt": DAY},
    ]
    arrow = pa.schema(
        [
            ("s", pa.string()),
            ("h", pa.int16()),
            ("i", pa.int32()),
            ("b", pa.int64()),
            ("r", pa.float32()),
            ("d", pa.float64()),
            ("f", pa.bool_()),
            ("t", pa.timestamp("us")),
            ("dt", pa.date32()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow), tmp_path / "typed.parquet")
    assert await PostgresWarehouse(postgres_url).load_files("typed", schema, DAY, [tmp_path / "typed.parquet"]) == 2
    con = await asyncpg.connect(postgres_url)
    stored = [dict(r) for r in await con.fetch("SELECT * FROM typed ORDER BY s NULLS LAST")]
    await con.close()
    assert stored == rows


async def test_postgres_falls_back_to_csv_for_numeric_columns(postgres_url: str, tmp_path: Path) -> None:
    from decimal import Decimal

    schema = parse_schema_yaml("name: money\nversion: 1\ncolumns:\n  - {name: amount, type: 'decimal(10,2)'}\n")
    table = pa.table({"amount": pa.array([Decimal("12.34"), None], type=pa.decimal128(10, 2))})
    pq.write_table(table, tmp_path / "money.parquet")
    adapter = PostgresWarehouse(postgres_url)
    assert await adapter.load_files("money", schema, DAY, [tmp_path / "money.parquet"]) == 2
    assert await adapter.count("money", DAY) == 2
