"""Assemble and run one poller replica: used by the arq worker and by ``headwater poller``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from services.poller.crypto import fernet_from_settings
from services.poller.http_pool import make_http_client
from services.poller.ingest_client import IngestPoster
from services.poller.registry import Registry
from services.poller.rotation import RotationReport, rotate_closed_hours
from services.poller.runtime import Poller
from services.poller.settings import PollerSettings
from shared.aws import AwsClients
from shared.logging import get_logger
from shared.redis import open_redis

log = get_logger(__name__)


@dataclass
class Replica:
    """The clients and the poller of one process."""

    settings: PollerSettings
    redis: Redis
    http: httpx.AsyncClient
    registry: Registry
    poller: Poller
    aws: AwsClients

    async def close(self) -> None:
        """Stop polling and close every client."""
        await self.poller.stop()
        await self.http.aclose()
        await self.aws.close()
        await self.redis.aclose()


def build_replica(settings: PollerSettings) -> Replica:
    """Create the clients and the poller from settings (nothing runs yet)."""
    redis = open_redis(settings)
    http = make_http_client(settings)
    registry = Registry(
        redis, prefix=settings.redis_prefix, fernet=fernet_from_settings(settings), shard_count=settings.shard_count
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
    else:
        log.warning("ingest_posting_disabled", reason="HEADWATER_INGEST_API_KEY is not set")
    poller = Poller(settings, redis=redis, http=http, registry=registry, poster=poster)
    return Replica(settings, redis, http, registry, poller, AwsClients(settings))


async def rotate_logs_once(replica: Replica) -> RotationReport:
    """Rotate this replica's closed hours to the logs bucket."""
    settings = replica.settings
    return await rotate_closed_hours(
        s3=await replica.aws.get("s3"),
        bucket=settings.bucket("logs"),
        log_dir=settings.logs_path,
        key_prefix=settings.logs_key_prefix,
        grace_s=settings.rotation_grace_s,
    )


async def run_replica(settings: PollerSettings, *, rotate_every_s: float | None = 300.0) -> None:
    """Run a replica until SIGINT/SIGTERM, rotating closed hours every ``rotate_every_s`` if given."""
    replica = build_replica(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await replica.poller.start()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rotate_every_s or 3600)
            if rotate_every_s and not stop.is_set():
                try:
                    await rotate_logs_once(replica)
                except Exception as exc:
                    log.warning("log_rotation_failed", error=type(exc).__name__)
    finally:
        await replica.close()
