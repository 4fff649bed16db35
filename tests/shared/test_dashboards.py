"""CloudWatch dashboards: bootstrap puts them on the emulator, and every metric they chart is one that is published.

Headwater's own namespaces are checked by publishing for real to the moto server with the code the services run
(ingest's per-minute counters, each API process's operations figures through the real request middleware, the
poller's on-time ratio from its Redis stats) and reading the metric list back. The AWS/SQS metrics are published by
AWS itself, not by the emulator: for those the test checks that each names a queue bootstrap created.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI

from services.ingest.cloudwatch import MetricsPublisher
from services.ingest.realtime import RealtimeCounters
from services.ingest.shipper import SPOOL_BYTES
from services.poller.settings import PollerSettings
from services.poller.wiring import open_poller
from services.replay.app import create_app as create_replay_app
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.bootstrap_bi import DASHBOARDS, dashboard_body, dashboard_name
from shared.http import RequestMetricsMiddleware
from shared.ops_metrics import NAMESPACE, OpsMetricsPublisher
from shared.settings import HeadwaterSettings
from tests.helpers import wait_until

# The SQS metrics AWS publishes for every queue (a dashboard may chart only these).
SQS_METRICS = {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent"}


def _charted(body: dict[str, Any]) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """Return (namespace, metric, dimensions) of every metric a dashboard charts (``"."`` repeats the previous)."""
    found = set()
    for widget in body["widgets"]:
        previous: list[Any] = []
        for line in widget.get("properties", {}).get("metrics", []):
            parts = [p for p in line if not isinstance(p, dict)]
            parts = [previous[i] if p == "." and i < len(previous) else p for i, p in enumerate(parts)]
            previous = parts
            dims = tuple(zip(parts[2::2], parts[3::2], strict=True))
            found.add((parts[0], parts[1], dims))
    return found


async def _published(cloudwatch: Any, namespace: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    metrics = (await cloudwatch.list_metrics(Namespace=namespace))["Metrics"]
    return {(m["MetricName"], tuple((d["Name"], d["Value"]) for d in m.get("Dimensions", []))) for m in metrics}


async def test_bootstrap_puts_both_dashboards(bootstrapped: HeadwaterSettings) -> None:
    async with AwsClients(bootstrapped) as aws:
        cloudwatch = await aws.get("cloudwatch")
        listed = {d["DashboardName"] for d in (await cloudwatch.list_dashboards())["DashboardEntries"]}
        assert listed >= {"hw-advertising", "hw-operations"}
        for name in DASHBOARDS:
            stored = await cloudwatch.get_dashboard(DashboardName=dashboard_name(bootstrapped, name))
            body = json.loads(stored["DashboardBody"])
            assert body == dashboard_body(bootstrapped, name)
            assert "${" not in stored["DashboardBody"]  # every placeholder filled
            assert all(w["properties"].get("region", "us-east-1") == "us-east-1" for w in body["widgets"])
        advertising = {m for _, m, _ in _charted(dashboard_body(bootstrapped, "advertising"))}
        assert advertising == {"Impressions", "Clicks", "ClickThroughRate"}


async def _count_requests(service: str) -> None:
    """Send requests through the real request-metrics middleware under ``service``'s name (one 5xx among them)."""
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=RequestMetricsMiddleware(app, service), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        await client.get("/ok")
        await client.get("/boom")


async def test_every_charted_metric_is_published(
    bootstrapped: HeadwaterSettings, make_settings: Callable[..., Any], redis: Any
) -> None:
    charted = set().union(*(_charted(dashboard_body(bootstrapped, name)) for name in DASHBOARDS))
    async with AwsClients(bootstrapped) as aws:
        cloudwatch = await aws.get("cloudwatch")
        # Ingest's per-minute counters, as its publisher sends them.
        counters = RealtimeCounters(redis, prefix="hw", retention_s=3600)
        minute = int(time.time() // 60 * 60) - 120
        counters.add_many({("impression", "ad-1"): 4, ("click", "ad-1"): 1}, at=minute + 1)
        await counters.flush()
        ingest = MetricsPublisher(
            counters=counters, redis=redis, cloudwatch=cloudwatch, namespace="Headwater/Ingest", prefix="hw"
        )
        assert await ingest.publish_minute(minute)
        # Each service's operations figures; ingest adds its spool gauge, the poller its on-time ratio (Redis stats).
        SPOOL_BYTES.set(4096)
        poller = await open_poller(make_settings(PollerSettings))
        try:
            last_minute = int(time.time() // 60) - 1
            await poller.redis.hset(poller.registry.keys.stats(last_minute), mapping={"on_time": 9, "late": 1})
            services = sorted({dict(dims)["Service"] for ns, _, dims in charted if ns == NAMESPACE})
            for service in services:
                publisher = OpsMetricsPublisher(
                    cloudwatch=cloudwatch, service=service, extra=poller.ops_metrics if service == "poller" else None
                )
                await _count_requests(service)
                sent = await publisher.publish()
                figures = {d["MetricName"]: d["Value"] for d in sent}
                assert figures["Requests"] == 2 and figures["Errors"] == 1, figures
                assert ("SpoolBytes" in figures) == (service == "ingest")
                if service == "poller":
                    assert figures["OnTimeRatio"] == 0.9
        finally:
            await poller.close()

        published = {ns: await _published(cloudwatch, ns) for ns in ("Headwater/Ingest", NAMESPACE)}
        queues = {url.rsplit("/", 1)[1] for url in (await (await aws.get("sqs")).list_queues())["QueueUrls"]}
    for namespace, metric, dims in sorted(charted):
        if namespace == "AWS/SQS":
            assert metric in SQS_METRICS and dict(dims)["QueueName"] in queues, (metric, dims)
        else:
            assert (metric, dims) in published[namespace], f"{namespace} {metric} {dims} is charted, never published"


async def test_an_api_process_publishes_its_operations_figures(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(ReplaySettings, ops_metrics_interval_s=0.2)
    app = create_replay_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replay") as client:
            assert (await client.get("/healthz")).status_code == 200
        async with AwsClients(settings) as aws:
            cloudwatch = await aws.get("cloudwatch")

            async def _published_requests() -> bool:
                names = await _published(cloudwatch, NAMESPACE)
                return {("Requests", (("Service", "replay"),)), ("Latency", (("Service", "replay"),))} <= names

            await wait_until(_published_requests, timeout=15, message="replay never published its figures")
