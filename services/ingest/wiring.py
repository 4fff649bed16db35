"""Ingest's composition root: the spool, counters, markers, sinks, shipper, limiter and intake, built once.

The API's lifespan is ``wiring_lifespan(open_ingest, settings)``; routes reach these parts through ``deps.py``
and the beacon fast path through ``app.state.wiring``. The background tasks (shipper, counter flush, CloudWatch)
start here and stop when the wiring closes, after which the spool gets one last chance to ship.
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from services.ingest.cloudwatch import MetricsPublisher
from services.ingest.dedup import Deduplicator
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
from shared.logging import get_logger
from shared.wiring import Clients

log = get_logger(__name__)


@dataclass(kw_only=True)
class IngestWiring(Clients):
    """The common clients plus ingest's own parts and its background tasks."""

    settings: IngestSettings
    spool: Spool
    counters: RealtimeCounters
    markers: DayMarkers
    sinks: SinkClients
    shipper: Shipper
    limiter: RateLimiter
    intake: Intake
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    async def start_background(self) -> None:
        """Start the shipper, the counter flush and (when enabled) the CloudWatch publisher."""
        settings = self.settings
        self._tasks += [
            asyncio.create_task(self.shipper.run(self._stop), name="ingest-shipper"),
            asyncio.create_task(
                self.counters.run(self._stop, settings.counter_flush_interval_s), name="ingest-counters"
            ),
        ]
        if settings.cloudwatch_enabled:
            publisher = MetricsPublisher(
                counters=self.counters,
                redis=self.redis,
                cloudwatch=await self.sinks.get("cloudwatch"),
                namespace=settings.cloudwatch_namespace,
                prefix=settings.resource_prefix,
            )
            self._tasks.append(
                asyncio.create_task(publisher.run(self._stop, settings.cloudwatch_interval_s), name="ingest-cloudwatch")
            )

    async def shut_down(self) -> None:
        """Stop the tasks, close the spool, ship until it is empty or the drain time ends, release slot and sinks.

        What is still spooled then keeps its days unmarked (stranded in Redis, no expiry) until this spool is
        opened again: a replica scaled away must not let a sibling mark a day whose events it still holds.
        """
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.spool.close()
        deadline = time.monotonic() + self.settings.shutdown_drain_s
        # Retried until the deadline: one failed attempt (AWS briefly away) must not end the drain.
        while self.spool.sealed() and (remaining := deadline - time.monotonic()) > 0:
            await self.shipper.final_drain(timeout_s=remaining)
            if self.spool.sealed():
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        left = self.spool.pending_days()
        try:
            await (self.markers.strand(left) if left else self.markers.withdraw())
        except Exception as exc:
            log.warning("pending_days_update_failed", error=type(exc).__name__, stranded=len(left))
        self.spool.release()
        await self.sinks.close()


async def open_ingest(settings: IngestSettings) -> IngestWiring:
    """Open ingest's clients and spool, build its parts and start its background tasks."""
    base = Clients.base_kwargs(settings)
    redis, prefix = base["redis"], settings.resource_prefix
    spool = Spool(
        settings.spool_dir,
        max_bytes=settings.spool_max_bytes,
        segment_max_events=settings.spool_segment_max_events,
        segment_max_bytes=settings.spool_segment_max_bytes,
    )
    try:
        await spool.open()
    except BaseException:
        await Clients(**base).close()
        raise
    slot_id = await asyncio.to_thread(slot_identity, spool)
    counters = RealtimeCounters(redis, prefix=prefix, retention_s=settings.realtime_retention_s)
    markers = DayMarkers(
        redis=redis,
        prefix=prefix,
        bucket=settings.bucket("raw"),
        grace_s=settings.day_complete_grace_s,
        quiet_s=settings.day_quiet_s,
        instance_id=spool.run_id,
        slot_id=slot_id,
    )
    sinks = SinkClients(settings)
    wiring = IngestWiring(
        **base,
        spool=spool,
        counters=counters,
        markers=markers,
        sinks=sinks,
        shipper=Shipper(settings=settings, spool=spool, aws=sinks, markers=markers),
        limiter=RateLimiter(rate=settings.beacon_rate_per_s, burst=settings.beacon_burst),
        intake=Intake(
            spool=spool,
            dedup=Deduplicator(redis, prefix=prefix, window_s=settings.dedup_window_s),
            counters=counters,
            hasher=IpHasher(settings.ip_hash_salt.get_secret_value()),
            registry=SchemaRegistry(base["aws"], bucket=settings.bucket("curated")),
            retry_after_s=settings.retry_after_s,
            batch_max_events=settings.batch_max_events,
        ),
    )
    wiring.on_close(wiring.shut_down)
    try:
        await markers.reclaim(spool.pending_days())
        await wiring.start_background()
    except BaseException:
        await wiring.close()
        raise
    if settings.gc_tuning:
        tune_gc(settings.gc_gen0_threshold)
    return wiring


def slot_identity(spool: Spool) -> str:
    """Return the lasting id of the spool's slot (kept in the slot, so the same volume gives the same id)."""
    assert spool.slot is not None, "open the spool first"
    path = spool.slot.path / "IDENTITY"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        identity = secrets.token_hex(8)
        path.write_text(identity + "\n")
        return identity


async def check_spool(wiring: Clients) -> None:
    """Readiness: the spool's slot takes a write and still has room for a largest request (else it refuses)."""
    ingest = cast(IngestWiring, wiring)
    spool = ingest.spool
    headroom = min(ingest.settings.max_request_body_bytes, spool.max_bytes // 4)
    if spool.slot is None:
        raise RuntimeError("spool is not open")
    probe = spool.slot.path / ".ready-probe"
    await asyncio.to_thread(_write_probe, probe)
    if spool.bytes_used > spool.max_bytes - headroom:
        raise RuntimeError(f"spool is full ({spool.bytes_used} of {spool.max_bytes} bytes)")


def _write_probe(path: Path) -> None:
    path.write_bytes(b"ok")
    path.unlink()


def tune_gc(gen0_threshold: int) -> None:
    """Keep what lives as long as the process out of the collector's passes and collect generation 0 rarely.

    A batch holds a few thousand short-lived containers that reference counting frees anyway; with the default
    threshold (700) the collector walked them several times per request, a third of the batch path's CPU.
    Process-wide, so only a server process turns it on (``gc_tuning``), never an import or a test.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, 20, 20)
