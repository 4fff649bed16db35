"""Publish each API process's operations figures to CloudWatch every minute (the "operations" dashboard reads them).

From this process's Prometheus registry (``shared.http``'s request metrics, ingest's spool gauge), per minute and
with the dimension ``Service``: ``Requests`` and ``Errors`` (5xx answers; Sum over replicas), ``Latency`` (mean
milliseconds of the minute's requests), ``SpoolBytes`` (a gauge, where the process has one). A wiring with an
``ops_metrics()`` coroutine adds its own figures (the poller: ``OnTimeRatio``). Nothing is sent for a minute with
no requests but the gauges.

On by default (``cloudwatch_ops_metrics``); the emulator stores the data like CloudWatch does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from shared.logging import get_logger

log = get_logger(__name__)

NAMESPACE = "Headwater/Operations"
REQUESTS = "headwater_http_requests_total"
LATENCY_SUM, LATENCY_COUNT = "headwater_http_request_seconds_sum", "headwater_http_request_seconds_count"
# Gauges published as they are by the service that owns them (Prometheus name -> service, CloudWatch name, unit).
GAUGES = {"headwater_ingest_spool_bytes": ("ingest", "SpoolBytes", "Bytes")}

Extra = Callable[[], Awaitable[dict[str, tuple[float, str]]]]


@dataclass
class Snapshot:
    """Cumulative request figures of one service in this process."""

    requests: float = 0.0
    errors: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0


def snapshot(service: str, registry: CollectorRegistry = REGISTRY) -> tuple[Snapshot, dict[str, float]]:
    """Return the service's cumulative request figures and the current value of each known gauge."""
    totals, gauges = Snapshot(), {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in GAUGES and GAUGES[sample.name][0] == service:
                gauges[sample.name] = gauges.get(sample.name, 0.0) + sample.value
            if sample.labels.get("service") != service:
                continue
            if sample.name == REQUESTS:
                totals.requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    totals.errors += sample.value
            elif sample.name == LATENCY_SUM:
                totals.latency_sum += sample.value
            elif sample.name == LATENCY_COUNT:
                totals.latency_count += sample.value
    return totals, gauges


class OpsMetricsPublisher:
    """Send the minute's deltas of this process's request figures, its gauges and the wiring's extras."""

    def __init__(
        self, *, cloudwatch: Any, service: str, extra: Extra | None = None, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.cloudwatch, self.service, self.extra, self.registry = cloudwatch, service, extra, registry
        self._last, _ = snapshot(service, registry)

    async def publish(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Send the figures since the last call; return the metric data sent."""
        current, gauges = snapshot(self.service, self.registry)
        last, self._last = self._last, current
        stamp = now or datetime.now(UTC)
        dimensions = [{"Name": "Service", "Value": self.service}]
        figures: list[tuple[str, float, str]] = []
        requests = current.requests - last.requests
        if requests > 0:
            figures += [("Requests", requests, "Count"), ("Errors", current.errors - last.errors, "Count")]
            count = current.latency_count - last.latency_count
            if count > 0:
                figures.append(("Latency", 1000 * (current.latency_sum - last.latency_sum) / count, "Milliseconds"))
        figures += [(GAUGES[name][1], value, GAUGES[name][2]) for name, value in gauges.items()]
        if self.extra is not None:
            figures += [(name, value, unit) for name, (value, unit) in (await self.extra()).items()]
        data = [
            {"MetricName": name, "Dimensions": dimensions, "Timestamp": stamp, "Value": value, "Unit": unit}
            for name, value, unit in figures
        ]
        for start in range(0, len(data), 1000):  # PutMetricData's limit per call
            await self.cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start : start + 1000])
        return data

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Publish every ``interval_s`` until ``stop`` is set (a failed minute is logged; its counts go next time)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if stop.is_set():
                break  # shutting down: no call that could wait on an AWS endpoint that is going away
            try:
                await self.publish()
            except Exception as exc:
                log.warning("ops_metrics_publish_failed", service=self.service, error=type(exc).__name__)


async def start_ops_metrics(wiring: Any, service: str, interval_s: float) -> Callable[[], Awaitable[None]]:
    """Start publishing for ``wiring``'s process in the background; return the coroutine function that stops it."""
    publisher = OpsMetricsPublisher(
        cloudwatch=await wiring.aws.get("cloudwatch"), service=service, extra=getattr(wiring, "ops_metrics", None)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop, interval_s), name=f"{service}-ops-metrics")

    async def _stop() -> None:
        stop.set()
        with contextlib.suppress(Exception):
            await task

    return _stop
