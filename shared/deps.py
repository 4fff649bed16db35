"""Short dependency aliases so route signatures stay small."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.aws import AwsClients


def get_redis(request: Request) -> Redis:
    """Return the app's Redis client."""
    return request.app.state.redis


def get_aws(request: Request) -> AwsClients:
    """Return the app's AWS client factory."""
    return request.app.state.aws


def get_settings(request: Request) -> Any:
    """Return the app's settings (the service's own Settings subclass)."""
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield a metadata-database session for one request."""
    async with request.app.state.sessions() as session:
        yield session


RedisDep = Annotated[Redis, Depends(get_redis)]
AwsDep = Annotated[AwsClients, Depends(get_aws)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SettingsDep = Annotated[Any, Depends(get_settings)]
