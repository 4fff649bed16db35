"""What the loader's background work needs, built once per process (worker startup or tests)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.loader.settings import LoaderSettings
from shared.aws import AwsClients
from shared.db import create_engine, session_factory


@dataclass
class Runtime:
    """Settings and open clients shared by the scanner, the consumers and the arq jobs."""

    settings: LoaderSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    aws: AwsClients
    arq: Any = None  # ArqRedis, to enqueue load jobs
    dispatch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def open(cls, settings: LoaderSettings, arq: Any = None) -> Runtime:
        """Open the clients for ``settings``."""
        engine = create_engine(settings)
        return cls(
            settings=settings, engine=engine, sessions=session_factory(engine), aws=AwsClients(settings), arq=arq
        )

    async def close(self) -> None:
        """Close every client."""
        await self.aws.close()
        await self.engine.dispose()
