"""`headwater migrate` runs versioned Alembic migrations and adopts a database made before they existed."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

from headwater.config import CliSettings
from headwater.setup_steps import import_all_models, migrate
from shared.db import MIGRATIONS_DIR, create_engine, schema_revision

DATA = Path(__file__).with_name("data")
OLD_KEY = ("k0ld", "old", "admin", "hash")


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


async def _check_upgraded(settings: CliSettings) -> None:
    """The database is at the newest revision, matches the models exactly, and kept its rows."""
    import_all_models()
    engine = create_engine(settings)
    try:
        assert await schema_revision(engine) == _head()
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
            )
            assert diff == []
            rows = (await conn.execute(text("SELECT key_id, name FROM api_key"))).all()
            assert [tuple(row) for row in rows] == [OLD_KEY[:2]]
    finally:
        await engine.dispose()


def _statements(name: str) -> list[str]:
    sql = "\n".join(line for line in (DATA / name).read_text().splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in sql.split(";") if statement.strip()]


INSERT_OLD_KEY = (
    "INSERT INTO api_key (key_id, name, scopes, key_hash, created_at, revoked) "
    "VALUES ('{}', '{}', '{}', '{}', '2026-11-25 00:00:00+00:00', false)".format(*OLD_KEY)
)


async def test_migrate_upgrades_a_sqlite_database_from_the_previous_schema(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "meta.db"
    with sqlite3.connect(path) as db:
        for statement in _statements("schema_1e85d76.sqlite.sql"):
            db.execute(statement)
        db.execute(INSERT_OLD_KEY)
    settings = CliSettings(database_url=f"sqlite:///{path}")
    await migrate(settings)
    await _check_upgraded(settings)
    await migrate(settings)  # a second run finds nothing to do
    await _check_upgraded(settings)


async def test_migrate_makes_an_old_sqlite_databases_loader_ids_never_reused(tmp_path: Path) -> None:
    """A SQLite database from the previous schema reused the newest loader job's id after a delete; upgraded, never.

    The rows (and the unique constraint on a job's days) survive the table copy.
    """
    import sqlite3

    path = tmp_path / "meta.db"
    job = (
        "INSERT INTO loader_job (name, schema_name, schema_version, source, start_date, warehouse, engine, "
        "table_name, emails, state, created_at, updated_at) VALUES ('{}', 'ad_events', 1, 's3://raw/beacon/', "
        "'2026-11-20', 'duckdb', 'duckdb', 'ad_events', '', 'active', '2026-11-25 00:00:00', '2026-11-25 00:00:00')"
    )
    run = (
        "INSERT INTO loader_job_run (job_id, dt, state, attempts, created_at, updated_at) "
        "VALUES ({}, '2026-11-24', 'loaded', 1, '2026-11-25 00:00:00', '2026-11-25 00:00:00')"
    )
    with sqlite3.connect(path) as db:
        for statement in _statements("schema_1e85d76.sqlite.sql"):
            db.execute(statement)
        db.execute(INSERT_OLD_KEY)
        db.execute(job.format("kept"))
        db.execute(job.format("newest"))
        db.execute(run.format(1))
        db.execute(run.format(2))
    settings = CliSettings(database_url=f"sqlite:///{path}")
    await migrate(settings)
    await _check_upgraded(settings)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id, name FROM loader_job ORDER BY id").fetchall() == [(1, "kept"), (2, "newest")]
        assert db.execute("SELECT job_id FROM loader_job_run ORDER BY id").fetchall() == [(1,), (2,)]
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(run.format(1))  # uq_loader_run_job_dt is still there
        for table in ("loader_job", "loader_job_run"):
            db.execute(f"DELETE FROM {table} WHERE id = 2")
        db.execute(job.format("after a delete"))
        db.execute(run.format(1).replace("2026-11-24", "2026-11-23"))
        assert db.execute("SELECT max(id) FROM loader_job").fetchone() == (3,)
        assert db.execute("SELECT max(id) FROM loader_job_run").fetchone() == (3,)


async def test_migrate_upgrades_a_postgres_database_from_the_previous_schema(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        for statement in _statements("schema_1e85d76.postgres.sql"):
            await conn.execute(statement)
        await conn.execute(INSERT_OLD_KEY)
    finally:
        await conn.close()
    settings = CliSettings(database_url=postgres_url)
    await migrate(settings)
    await _check_upgraded(settings)


async def test_migrate_builds_a_fresh_database_through_the_migrations(tmp_path: Path) -> None:
    settings = CliSettings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    await migrate(settings)
    engine = create_engine(settings)
    try:
        assert await schema_revision(engine) == _head()
        async with engine.begin() as conn:
            await conn.execute(text(INSERT_OLD_KEY))
    finally:
        await engine.dispose()
    await _check_upgraded(settings)


# Tables a migration after that schema creates (0004: the poller's durable device registry).
ADDED_SINCE_FIXTURE = {"poller_device"}


@pytest.mark.parametrize("name", ["schema_1e85d76.sqlite.sql", "schema_1e85d76.postgres.sql"])
def test_previous_schema_fixture_has_every_table(name: str) -> None:
    import_all_models()
    created = {s.split("(")[0].split()[-1] for s in _statements(name) if s.upper().startswith("CREATE TABLE")}
    assert created == set(SQLModel.metadata.tables) - ADDED_SINCE_FIXTURE
