"""Dependency aliases every service shares; each service's ``deps.py`` adds typed ones for its own wiring.

Routes never read ``request.app.state``: they take these aliases, which read the wiring the lifespan opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from arq import ArqRedis
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.aws import AwsClients
from shared.errors import ServiceUnavailableError
from shared.wiring import Clients


def get_clients(request: Request) -> Clients:
    """Return the app's wiring (typed as the common clients; services narrow it in their deps.py)."""
    return request.app.state.wiring


def get_redis(clients: Annotated[Clients, Depends(get_clients)]) -> Redis:
    """Return the app's Redis client."""
    return clients.redis


def get_aws(clients: Annotated[Clients, Depends(get_clients)]) -> AwsClients:
    """Return the app's AWS client factory."""
    return clients.aws


def get_arq(clients: Annotated[Clients, Depends(get_clients)]) -> ArqRedis:
    """Return the app's arq pool (services that enqueue jobs open one)."""
    if clients.arq is None:
        raise ServiceUnavailableError("this service has no job queue")
    return clients.arq


async def get_session(clients: Annotated[Clients, Depends(get_clients)]) -> AsyncIterator[AsyncSession]:
    """Yield a metadata-database session for one request."""
    async with clients.sessions() as session:
        yield session


ClientsDep = Annotated[Clients, Depends(get_clients)]
RedisDep = Annotated[Redis, Depends(get_redis)]
AwsDep = Annotated[AwsClients, Depends(get_aws)]
ArqDep = Annotated[ArqRedis, Depends(get_arq)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
