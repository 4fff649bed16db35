"""The poller's composition root: the clients, the registry and the polling loop of one process.

The API opens it with ``wiring_lifespan(open_poller_api, settings)`` and serves the registry; the arq worker
(``worker.py``) and ``headwater poller`` (:func:`run_replica`) open the same wiring and call
:meth:`PollerWiring.start_polling`, so a process polls only when it was started to. Closing the wiring stops the
loop first (in-flight polls finish, leases are released), then closes the HTTP client and the common clients.
Every process (API and pollers) keeps the Redis registry loaded: if Redis lost it, it is rebuilt from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

import httpx

from services.poller.crypto import fernet_from_settings
from services.poller.http_pool import make_http_client
from services.poller.ingest_client import IngestPoster
from services.poller.polling import Poller
from services.poller.registry import Registry
from services.poller.registry_store import RegistryStore
from services.poller.rotation import RotationReport, rotate_closed_hours
from services.poller.settings import PollerSettings
from services.poller.stats import recent_minutes
from shared.logging import get_logger
from shared.wiring import Clients

log = get_logger(__name__)


@dataclass(kw_only=True)
class PollerWiring(Clients):
    """The common clients plus the poller's own: the Eagle HTTP client, the registry, the loop and the poster."""

    settings: PollerSettings
    http: httpx.AsyncClient
    registry: Registry
    poster: IngestPoster | None
    poller: Poller

    async def start_polling(self) -> None:
        """Take shard leases and start polling; the loop stops when the wiring closes."""
        if self.poster is None:
            log.warning("ingest_posting_disabled", reason="HEADWATER_INGEST_API_KEY is not set")
        await self.keep_registry_loaded()
        await self.poller.start()
        self.on_close(self.poller.stop)

    async def keep_registry_loaded(self) -> None:
        """Rebuild Redis's registry from the database now if it lost it, and check again every few seconds.

        The check is one EXISTS on the loaded marker; after a rebuild the registry version moved, so the
        polling loop reloads its devices on its next registry check.
        """
        await self._ensure_registry_loaded()
        task = asyncio.create_task(self._registry_keeper(), name="poller-registry-keeper")

        async def _stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.on_close(_stop)

    async def _ensure_registry_loaded(self) -> None:
        try:
            await self.registry.ensure_loaded()
        except Exception as exc:  # the database or Redis is away: the keeper tries again
            log.warning("registry_rebuild_failed", error=type(exc).__name__)

    async def _registry_keeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_check_s)
            await self._ensure_registry_loaded()

    async def ops_metrics(self) -> dict[str, tuple[float, str]]:
        """Return the last whole minute's on-time ratio (all replicas) for the operations dashboard, when it polled."""
        previous, _current = await recent_minutes(self.redis, keys=self.registry.keys, minutes=2)
        polls = previous.on_time + previous.late
        return {"OnTimeRatio": (previous.on_time / polls, "None")} if polls else {}

    async def rotate_logs(self) -> RotationReport:
        """Upload this process's closed hours of device logs to the logs bucket."""
        settings = self.settings
        return await rotate_closed_hours(
            s3=await self.aws.get("s3"),
            bucket=settings.bucket("logs"),
            log_dir=settings.logs_path,
            key_prefix=settings.logs_key_prefix,
            grace_s=settings.rotation_grace_s,
        )


async def open_poller(settings: PollerSettings) -> PollerWiring:
    """Build the poller's clients and loop from settings (nothing connects and nothing polls yet)."""
    base = Clients.base_kwargs(settings)
    http = make_http_client(settings)
    registry = Registry(
        base["redis"],
        prefix=settings.redis_prefix,
        fernet=fernet_from_settings(settings),
        shard_count=settings.shard_count,
        store=RegistryStore(base["sessions"]),
    )
    poster = None
    if settings.ingest_api_key is not None:
        poster = IngestPoster(
            http,
            base_url=settings.ingest_url,
            api_key=settings.ingest_api_key.get_secret_value(),
            batch_size=settings.ingest_batch_size,
            buffer_max=settings.ingest_buffer_max,
        )
    poller = Poller(settings, redis=base["redis"], http=http, registry=registry, poster=poster)
    wiring = PollerWiring(**base, http=http, registry=registry, poster=poster, poller=poller)
    wiring.on_close(http.aclose)
    return wiring


async def open_poller_api(settings: PollerSettings) -> PollerWiring:
    """Open the wiring for the API: it does not poll, but it rebuilds the registry if Redis lost it."""
    wiring = await open_poller(settings)
    await wiring.keep_registry_loaded()
    return wiring


async def run_replica(settings: PollerSettings, *, rotate_every_s: float | None = 300.0) -> None:
    """Poll until SIGINT/SIGTERM, rotating closed hours every ``rotate_every_s`` if given (``headwater poller``)."""
    wiring = await open_poller(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await wiring.start_polling()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rotate_every_s or 3600)
            if rotate_every_s and not stop.is_set():
                try:
                    await wiring.rotate_logs()
                except Exception as exc:
                    log.warning("log_rotation_failed", error=type(exc).__name__)
    finally:
        await wiring.close()
