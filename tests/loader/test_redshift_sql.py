"""The SQL the Redshift adapter sends, run on a real Postgres where the dialects meet: the date's delete and
staged insert as one transaction (BatchExecuteStatement, or the emulators' BEGIN/COMMIT block), ALTER TABLE ADD
COLUMN, VACUUM and ANALYZE. What only Redshift has (COPY ... IAM_ROLE ... FORMAT AS PARQUET MANIFEST, DISTKEY and
SORTKEY) is asserted as text; in its place the staging table is filled with the rows COPY would bring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from services.loader.warehouse.redshift import (
    ADVERTISING_VIEW_SCHEMA,
    add_column_sql,
    advertising_table,
    create_table_sql,
    delete_date_sql,
    load_sqls,
    maintenance_sqls,
    transaction_block,
)
from shared.schemas import parse_schema_yaml
from tests.loader.fake_transform import AD_EVENTS_V2_YAML, AD_EVENTS_YAML

SCHEMA = parse_schema_yaml(AD_EVENTS_YAML)
D0, D1 = date(2026, 11, 19), date(2026, 11, 20)
MANIFEST = f"s3://hw-curated/ad_events/v1/dt={D1}/_manifest.json"
ROLE = "arn:aws:iam::123456789012:role/headwater-redshift-copy"
STAGE = "ad_events__load"


def _event(event_id: str, ad: str, dt: date | None = None) -> tuple[object, ...]:
    stamp = datetime(2026, 11, 20, 12, tzinfo=UTC).replace(tzinfo=None)
    row: tuple[object, ...] = (event_id, "impression", ad, "c1", "top", "u1", stamp, stamp)
    return (*row, dt) if dt else row


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    con = await asyncpg.connect(postgres_url)
    yield con
    await con.close()


def _shared_ddl(sql: str) -> str:
    """Split Redshift's DISTSTYLE/SORTKEY tail off the CREATE TABLE (asserted as text by the caller)."""
    shared, _, tail = sql.partition(" DISTSTYLE ")
    assert tail, sql
    return shared


async def _rows_by_date(pg: asyncpg.Connection, table: str = "ad_events") -> dict[date, list[str]]:
    found: dict[date, list[str]] = {}
    first = "event_id" if table == "ad_events" else "ad_id"
    for row in await pg.fetch(f'SELECT dt, {first} FROM "{table}" ORDER BY 1, 2'):
        found.setdefault(row[0], []).append(row[1])
    return found


async def _load(pg: asyncpg.Connection, events: list[tuple[object, ...]], *, fail_copy: bool = False) -> None:
    """Run load_sqls as one transaction, COPY's rows put into the staging table in its place."""
    delete, create, copy, insert, drop = load_sqls("ad_events", SCHEMA, D1, MANIFEST, ROLE)
    assert copy == f"COPY \"{STAGE}\" FROM '{MANIFEST}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET MANIFEST"
    async with pg.transaction():
        await pg.execute(delete)
        await pg.execute(create)
        if fail_copy:
            raise RuntimeError("COPY failed (S3ServiceException)")
        await pg.copy_records_to_table(STAGE, records=events)
        await pg.execute(insert)
        await pg.execute(drop)


async def test_the_table_ddl_runs_and_the_redshift_keys_are_its_tail(pg: asyncpg.Connection) -> None:
    sql = create_table_sql("ad_events", SCHEMA)
    assert sql.endswith(' DISTSTYLE KEY DISTKEY ("ad_id") COMPOUND SORTKEY ("dt", "event_time")')
    await pg.execute(_shared_ddl(sql))
    await pg.execute(_shared_ddl(sql))  # IF NOT EXISTS: a second load's ensure_table is harmless
    columns = await pg.fetch(
        "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'ad_events' "
        "ORDER BY ordinal_position"
    )
    assert [c["column_name"] for c in columns][-1] == "dt"
    assert dict((c["column_name"], c["is_nullable"]) for c in columns)["event_id"] == "NO"


async def test_a_date_is_replaced_exactly_once_and_other_dates_are_untouched(pg: asyncpg.Connection) -> None:
    await pg.execute(_shared_ddl(create_table_sql("ad_events", SCHEMA)))
    await pg.copy_records_to_table("ad_events", records=[_event("old-d1", "ad-1", D1), _event("keep-d0", "ad-1", D0)])
    new = [_event("e1", "ad-1"), _event("e2", "ad-2")]
    await _load(pg, new)
    await _load(pg, new)  # a redelivered load replaces the date again: no duplicates
    assert await _rows_by_date(pg) == {D0: ["keep-d0"], D1: ["e1", "e2"]}
    # the temporary staging table is gone with the transaction's end
    assert await pg.fetchval("SELECT to_regclass($1)", STAGE) is None


async def test_a_copy_that_fails_leaves_the_date_as_it_was(pg: asyncpg.Connection) -> None:
    await pg.execute(_shared_ddl(create_table_sql("ad_events", SCHEMA)))
    await pg.copy_records_to_table("ad_events", records=[_event("old-d1", "ad-1", D1)])
    with pytest.raises(RuntimeError, match="COPY failed"):
        await _load(pg, [_event("e1", "ad-1")], fail_copy=True)
    assert await _rows_by_date(pg) == {D1: ["old-d1"]}  # the DELETE was rolled back with it


async def test_the_emulator_block_form_is_one_transaction_on_postgres(pg: asyncpg.Connection) -> None:
    """Without BatchExecuteStatement the same statements go as one BEGIN/COMMIT block in one ExecuteStatement."""
    await pg.execute(_shared_ddl(create_table_sql("ad_events", SCHEMA)))
    await pg.copy_records_to_table("ad_events", records=[_event("old-d1", "ad-1", D1)])
    delete, create, _copy, insert, drop = load_sqls("ad_events", SCHEMA, D1, MANIFEST, ROLE)
    stage_rows = f"INSERT INTO \"{STAGE}\" (event_id, ad_id) VALUES ('b1', 'ad-9')"  # COPY's rows
    block = transaction_block([delete, create, stage_rows, insert, drop])
    assert block.startswith("BEGIN;\nDELETE FROM") and block.endswith(";\nCOMMIT;")
    await pg.execute(block)  # one simple-query message, as the Data API receives it
    assert await _rows_by_date(pg) == {D1: ["b1"]}
    failing = transaction_block([delete, create, f'INSERT INTO "{STAGE}" (nope) VALUES (1)', insert, drop])
    with pytest.raises(asyncpg.PostgresError):
        await pg.execute(failing)
    await pg.execute("ROLLBACK")
    assert await _rows_by_date(pg) == {D1: ["b1"]}


async def test_a_new_schema_version_adds_its_column_and_loads_into_it(pg: asyncpg.Connection) -> None:
    await pg.execute(_shared_ddl(create_table_sql("ad_events", SCHEMA)))
    v2 = parse_schema_yaml(AD_EVENTS_V2_YAML)
    await pg.execute(add_column_sql("ad_events", "country", v2.column("country").type))
    delete, create, _copy, insert, drop = load_sqls("ad_events", v2, D1, MANIFEST, ROLE)
    assert '"country"' in create and '"country"' in insert
    async with pg.transaction():
        for sql in (delete, create):
            await pg.execute(sql)
        await pg.copy_records_to_table(STAGE, records=[(*_event("e1", "ad-1"), "FR")])
        await pg.execute(insert)
        await pg.execute(drop)
    assert await pg.fetchval("SELECT country FROM ad_events WHERE dt = $1", D1) == "FR"
    deleted = await pg.execute(delete_date_sql("ad_events", "dt", D1))
    assert deleted == "DELETE 1"


async def test_vacuum_and_analyze_run_each_on_their_own(pg: asyncpg.Connection) -> None:
    await pg.execute(_shared_ddl(create_table_sql("ad_events", SCHEMA)))
    assert maintenance_sqls("ad_events") == ['VACUUM "ad_events"', 'ANALYZE "ad_events"']
    for sql in maintenance_sqls("ad_events"):
        await pg.execute(sql)  # each alone, outside a transaction block
    # why they are sent one by one: in a transaction block VACUUM is refused (on Redshift as on Postgres)
    with pytest.raises(asyncpg.ActiveSQLTransactionError):
        await pg.execute(transaction_block(maintenance_sqls("ad_events")))


async def test_the_advertising_view_loads_into_its_own_table(pg: asyncpg.Connection) -> None:
    view_url = f"s3://hw-curated/_views/advertising/ad_events/v1/dt={D1}/part-0.parquet"
    table = advertising_table("ad_events")
    ddl = create_table_sql(table, ADVERTISING_VIEW_SCHEMA)
    assert ddl.endswith(' DISTSTYLE KEY DISTKEY ("ad_id") COMPOUND SORTKEY ("dt", "ad_id")')
    await pg.execute(_shared_ddl(ddl))
    delete, create, copy, insert, drop = load_sqls(table, ADVERTISING_VIEW_SCHEMA, D1, view_url, ROLE, manifest=False)
    # one object, no manifest
    assert copy == f"COPY \"{table}__load\" FROM '{view_url}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET"
    for _ in range(2):
        async with pg.transaction():
            await pg.execute(delete)
            await pg.execute(create)
            await pg.copy_records_to_table(f"{table}__load", records=[("ad-1", 10, 2, 0.2), ("ad-2", 4, 0, 0.0)])
            await pg.execute(insert)
            await pg.execute(drop)
    rows = await pg.fetch(f'SELECT ad_id, impressions, clicks, ctr, dt FROM "{table}" ORDER BY ad_id')
    assert [tuple(r) for r in rows] == [("ad-1", 10, 2, 0.2, D1), ("ad-2", 4, 0, 0.0, D1)]
