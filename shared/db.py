"""Metadata database: SQLite (aiosqlite) by default, Postgres (asyncpg) when the URL says so."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, event, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.settings import HeadwaterSettings


def normalise_database_url(url: str) -> str:
    """Map plain postgres:// and sqlite:// URLs onto their async drivers."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def create_engine(settings: HeadwaterSettings) -> AsyncEngine:
    """Create the async engine for the metadata database."""
    url = normalise_database_url(settings.database_url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        # Several processes share one SQLite file locally: WAL lets readers run beside a writer.
        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return a session factory bound to ``engine``."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def create_tables(engine: AsyncEngine) -> None:
    """Create every table registered on SQLModel's metadata (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)


async def ping(engine: AsyncEngine) -> None:
    """Run a trivial query; raises when the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The first revision: the schema as `create_all` made it before migrations were versioned.
BASELINE_REVISION = "0001"


def alembic_config(connection: Connection, metadata: MetaData) -> Config:
    """Return an Alembic config that runs shared/migrations on ``connection`` against ``metadata``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes.update(connection=connection, metadata=metadata)
    return config


def _upgrade(connection: Connection, metadata: MetaData) -> None:
    config = alembic_config(connection, metadata)
    if MigrationContext.configure(connection).get_current_revision() is None:
        # A database made by create_all before Alembic holds the baseline schema: record that, then upgrade.
        if inspect(connection).has_table("api_key"):
            command.stamp(config, BASELINE_REVISION)
    command.upgrade(config, "head")


async def upgrade_schema(engine: AsyncEngine, metadata: MetaData) -> None:
    """Apply every pending migration (a database from before versioned migrations is adopted at the baseline)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, metadata)


async def schema_revision(engine: AsyncEngine) -> str | None:
    """Return the database's current migration revision (None before the first migration)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
