"""The ingest app: routes, the spool, and the background shipper and counter flusher in the lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.ingest.api import router
from services.ingest.cloudwatch import MetricsPublisher
from services.ingest.dedup import Deduplicator
from services.ingest.fastpath import BeaconFastPath
from services.ingest.intake import Intake
from services.ingest.markers import DayMarkers
from services.ingest.ratelimit import RateLimiter
from services.ingest.realtime import RealtimeCounters
from services.ingest.records import IpHasher
from services.ingest.registry import SchemaRegistry
from services.ingest.settings import IngestSettings
from services.ingest.shipper import Shipper
from services.ingest.sinks import SinkClients
from services.ingest.spool import Spool
from shared.health import check_bucket, check_database, check_redis, check_stream
from shared.http import create_service_app, open_resources
from shared.logging import get_logger

log = get_logger(__name__)
UI_DIR = Path(__file__).parent / "ui"


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Create the ingest service app."""
    settings = settings or IngestSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings):
            spool = Spool(
                settings.spool_dir,
                max_bytes=settings.spool_max_bytes,
                segment_max_events=settings.spool_segment_max_events,
                segment_max_bytes=settings.spool_segment_max_bytes,
            )
            await spool.open()
            prefix = settings.resource_prefix
            counters = RealtimeCounters(app.state.redis, prefix=prefix, retention_s=settings.realtime_retention_s)
            markers = DayMarkers(
                redis=app.state.redis,
                prefix=prefix,
                bucket=settings.bucket("raw"),
                grace_s=settings.day_complete_grace_s,
                quiet_s=settings.day_quiet_s,
                instance_id=spool.run_id,
            )
            sinks = SinkClients(settings)
            shipper = Shipper(settings=settings, spool=spool, aws=sinks, markers=markers)
            app.state.spool, app.state.counters, app.state.shipper = spool, counters, shipper
            app.state.beacon_limiter = RateLimiter(rate=settings.beacon_rate_per_s, burst=settings.beacon_burst)
            app.state.intake = Intake(
                spool=spool,
                dedup=Deduplicator(app.state.redis, prefix=prefix, window_s=settings.dedup_window_s),
                counters=counters,
                hasher=IpHasher(settings.ip_hash_salt.get_secret_value()),
                registry=SchemaRegistry(app.state.aws, bucket=settings.bucket("curated")),
                retry_after_s=settings.retry_after_s,
            )
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(shipper.run(stop), name="ingest-shipper"),
                asyncio.create_task(counters.run(stop, settings.counter_flush_interval_s), name="ingest-counters"),
            ]
            if settings.cloudwatch_enabled:
                publisher = MetricsPublisher(
                    counters=counters,
                    redis=app.state.redis,
                    cloudwatch=await sinks.get("cloudwatch"),
                    namespace=settings.cloudwatch_namespace,
                    prefix=prefix,
                )
                tasks.append(asyncio.create_task(publisher.run(stop, settings.cloudwatch_interval_s)))
            # Everything built so far lives as long as the process: keep it out of the collector's passes. A batch
            # holds a few thousand short-lived containers that reference counting frees anyway; with the default
            # threshold (700) the collector walked them several times per request, a third of the batch path's CPU.
            gc.collect()
            gc.freeze()
            gc.set_threshold(settings.gc_gen0_threshold, 20, 20)
            try:
                yield
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                await spool.close()
                await shipper.final_drain(timeout_s=settings.shutdown_drain_s)
                spool.release()
                await sinks.close()
                try:
                    await markers.withdraw()
                except Exception as exc:
                    log.warning("pending_days_withdraw_failed", error=type(exc).__name__)

    app = create_service_app(
        settings=settings,
        title="Headwater ingest",
        description="The front door: beacons, event batches and meter reads, made durable in a local spool and "
        "shipped to the raw archive (S3) and the events stream (Kinesis); live per-minute counters.",
        lifespan=lifespan,
        readiness_checks={
            "redis": check_redis,
            "database": check_database,
            "raw_bucket": check_bucket("raw"),
            "events_stream": check_stream("events"),
        },
        openapi_tags=[
            {"name": "beacons", "description": "Public impression and click beacons (rate-limited per client)."},
            {"name": "events", "description": "Typed events and meter reads (API key with ingest:write)."},
            {"name": "realtime", "description": "Per-minute impressions, clicks and CTR."},
            {"name": "bad rows", "description": "Accepted events that failed validation when shipped."},
        ],
    )
    app.include_router(router)
    if settings.beacon_fast_path:
        app.add_middleware(BeaconFastPath, state=app.state, service=settings.service_name)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
