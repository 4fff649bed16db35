"""Publish the per-minute counters to CloudWatch: ``Impressions``, ``Clicks`` and ``ClickThroughRate``.

A minute is published once it is over (plus a short settle time for the counter flushes of every process).
Processes share the work through a Redis claim per minute, so each minute is published exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from services.ingest.realtime import RealtimeCounters, ctr
from shared.logging import get_logger

log = get_logger(__name__)

SETTLE_S = 5.0
CATCH_UP_MINUTES = 10


class MetricsPublisher:
    """Send each finished minute's totals to CloudWatch once."""

    def __init__(
        self, *, counters: RealtimeCounters, redis: Redis, cloudwatch: Any, namespace: str, prefix: str
    ) -> None:
        self._counters = counters
        self._redis = redis
        self._cloudwatch = cloudwatch
        self._namespace = namespace
        self._claim_prefix = f"{prefix}:ingest:cw:"
        self._next_minute: int | None = None

    async def publish_minute(self, minute: int) -> bool:
        """Publish one minute (epoch seconds at its start) unless another process already did; return whether sent."""
        claim = f"{self._claim_prefix}{minute}"
        if not await self._redis.set(claim, b"1", nx=True, ex=86400):
            return False
        impressions, clicks = await self._counters.minute_totals(minute)
        stamp = datetime.fromtimestamp(minute, UTC)
        try:
            await self._cloudwatch.put_metric_data(
                Namespace=self._namespace,
                MetricData=[
                    {"MetricName": "Impressions", "Timestamp": stamp, "Value": impressions, "Unit": "Count"},
                    {"MetricName": "Clicks", "Timestamp": stamp, "Value": clicks, "Unit": "Count"},
                    {
                        "MetricName": "ClickThroughRate",
                        "Timestamp": stamp,
                        "Value": 100.0 * ctr(impressions, clicks),
                        "Unit": "Percent",
                    },
                ],
            )
        except Exception:
            await self._redis.delete(claim)
            raise
        return True

    async def publish_due(self, *, now: float | None = None) -> int:
        """Publish every finished minute not yet published by this process; return how many were sent."""
        now = now if now is not None else time.time()
        last_finished = int((now - 60 - SETTLE_S) // 60 * 60)
        if self._next_minute is None:
            self._next_minute = last_finished - 60 * (CATCH_UP_MINUTES - 1)
        sent = 0
        while self._next_minute <= last_finished:
            sent += await self.publish_minute(self._next_minute)
            self._next_minute += 60
        return sent

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Publish due minutes every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.publish_due()
            except Exception as exc:
                log.warning("cloudwatch_publish_failed", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
