"""One way to wire a service: a composition root built once per process, shared by its API and its arq worker.

Each service has ``services/<name>/wiring.py`` with a dataclass that extends :class:`Clients` with the service's
own parts (spool, registry, arq pool, ...) and an async ``open_<name>(settings)`` that builds it. Then:

- the API's lifespan is ``wiring_lifespan(open_<name>, settings)``: the wiring lives on ``app.state.wiring``
  and routes reach it only through the typed aliases of the service's ``deps.py``;
- the arq worker's hooks are ``worker_hooks(open_<name>, <Name>Settings)``: the wiring lives in ``ctx["wiring"]``
  and jobs read it from there;
- settings are built when a process starts (or handed in by a test), never at import time: the worker module
  exposes ``WorkerSettings`` through a module ``__getattr__`` (see :func:`lazy_worker_settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from arq import ArqRedis, create_pool
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.aws import AwsClients
from shared.db import create_engine, session_factory
from shared.logging import configure_logging
from shared.ops_metrics import start_ops_metrics
from shared.redis import arq_redis_settings, open_redis
from shared.settings import HeadwaterSettings


class Closeable(Protocol):
    """Something the wiring closes at shutdown."""

    async def close(self) -> None: ...


@dataclass(kw_only=True)
class Clients:
    """The clients every service process opens once: settings, Redis, the metadata database and AWS.

    A service's wiring subclasses this and adds its own parts; ``close`` runs the added closers (last added,
    first closed) and then closes these clients.
    """

    settings: HeadwaterSettings
    redis: Redis
    db_engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    aws: AwsClients
    arq: ArqRedis | None = None
    _closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list, repr=False)

    @staticmethod
    def base_kwargs(settings: HeadwaterSettings, *, redis: Redis | None = None) -> dict[str, Any]:
        """Build the common clients for ``settings`` (nothing connects yet) as keyword arguments."""
        engine = create_engine(settings)
        return {
            "settings": settings,
            "redis": redis if redis is not None else open_redis(settings),
            "db_engine": engine,
            "sessions": session_factory(engine),
            "aws": AwsClients(settings),
        }

    async def open_job_queue(self) -> ArqRedis:
        """Open the arq pool this service enqueues its own jobs on (on its queue; closed with the wiring)."""
        self.arq = await create_pool(arq_redis_settings(self.settings), default_queue_name=self.settings.arq_queue)
        self.on_close(self.arq.aclose)
        return self.arq

    def on_close(self, closer: Callable[[], Awaitable[Any]]) -> None:
        """Run ``closer`` when the wiring closes (before the common clients close)."""
        self._closers.append(closer)

    async def close(self) -> None:
        """Close the service's parts, then AWS, the database and Redis."""
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                await closer()
        self._closers.clear()
        await self.aws.close()
        await self.db_engine.dispose()
        await self.redis.aclose()


W = TypeVar("W", bound=Clients)
S = TypeVar("S", bound=HeadwaterSettings)
OpenWiring = Callable[[S], Awaitable[W]]


def wiring_lifespan(
    open_wiring: Callable[[S], Awaitable[W]], settings: S
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Return an API lifespan that opens the wiring on ``app.state.wiring`` and closes it at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        wiring = await open_wiring(settings)
        app.state.wiring = wiring
        if settings.cloudwatch_ops_metrics:  # the "operations" dashboard's figures (shared/ops_metrics.py)
            wiring.on_close(await start_ops_metrics(wiring, settings.service_name, settings.ops_metrics_interval_s))
        try:
            yield
        finally:
            await wiring.close()

    return lifespan


def worker_hooks(
    open_wiring: Callable[[S], Awaitable[W]], settings_type: Callable[[], S]
) -> tuple[Callable[[dict[str, Any]], Awaitable[None]], Callable[[dict[str, Any]], Awaitable[None]]]:
    """Return arq ``on_startup``/``on_shutdown`` hooks that open the wiring into ``ctx["wiring"]`` and close it.

    Settings come from ``ctx["settings"]`` when a test or the CLI put them there, else from the environment.
    The worker's own Redis connection (``ctx["redis"]``) doubles as the wiring's arq pool.
    """

    async def on_startup(ctx: dict[str, Any]) -> None:
        settings: S = ctx.get("settings") or settings_type()
        ctx["settings"] = settings
        configure_logging(settings.service_name, settings.log_level, settings.log_json)
        wiring = await open_wiring(settings)
        if wiring.arq is None and isinstance(ctx.get("redis"), ArqRedis):
            wiring.arq = ctx["redis"]
        ctx["wiring"] = wiring

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        wiring: Clients | None = ctx.pop("wiring", None)
        if wiring is not None:
            await asyncio.shield(wiring.close())

    return on_startup, on_shutdown


def lazy_worker_settings(build: Callable[[], type]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that builds ``WorkerSettings`` on first access (not at import).

    ``arq services.<name>.worker.WorkerSettings`` reads the attribute when the worker starts, so the settings
    are read from the environment of that process, once.
    """
    cache: dict[str, type] = {}

    def __getattr__(name: str) -> Any:
        if name != "WorkerSettings":
            raise AttributeError(name)
        if name not in cache:
            cache[name] = build()
        return cache[name]

    return __getattr__
