"""Create the metadata tables outside production (production runs ``headwater migrate`` first)."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.transform import models  # noqa: F401 - registers transform's tables on SQLModel.metadata
from shared.db import create_tables
from shared.logging import get_logger

log = get_logger(__name__)


async def ensure_tables(engine: AsyncEngine) -> None:
    """Create missing tables; the app and the worker may race on one SQLite file, so a lost race is retried once."""
    try:
        await create_tables(engine)
    except (OperationalError, ProgrammingError) as exc:  # "already exists": the other process won
        log.info("create_tables_retry", error=str(exc)[:200])
        await create_tables(engine)
