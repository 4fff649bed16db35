"""Finished minutes are published to CloudWatch once, with CTR as clicks / impressions."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from services.ingest.cloudwatch import MetricsPublisher
from services.ingest.realtime import RealtimeCounters
from services.ingest.settings import IngestSettings
from shared.aws import AwsClients


async def _sum(cloudwatch, name: str, minute: int) -> float | None:  # type: ignore[no-untyped-def]
    start = datetime.fromtimestamp(minute, UTC)
    stats = await cloudwatch.get_metric_statistics(
        Namespace="Headwater/Ingest",
        MetricName=name,
        StartTime=start - timedelta(minutes=1),
        EndTime=start + timedelta(minutes=2),
        Period=60,
        Statistics=["Sum"],
    )
    points = stats["Datapoints"]
    return sum(point["Sum"] for point in points) if points else None


async def test_finished_minute_is_published_once_with_ctr(
    ingest_settings: IngestSettings, redis: Redis, aws: AwsClients
) -> None:
    counters = RealtimeCounters(redis, prefix="hw", retention_s=600)
    minute = int(time.time() // 60 * 60) - 120
    counters.add_many({("impression", "ad-1"): 8}, at=minute + 5)
    counters.add_many({("click", "ad-1"): 2}, at=minute + 30)
    await counters.flush()
    cloudwatch = await aws.get("cloudwatch")
    publisher = MetricsPublisher(
        counters=counters, redis=redis, cloudwatch=cloudwatch, namespace="Headwater/Ingest", prefix="hw"
    )
    second = MetricsPublisher(
        counters=counters, redis=redis, cloudwatch=cloudwatch, namespace="Headwater/Ingest", prefix="hw"
    )

    sent = await publisher.publish_due(now=minute + 60 + 10)
    assert sent >= 1
    assert await second.publish_due(now=minute + 60 + 10) == 0, "another process must not publish the same minute"
    assert await _sum(cloudwatch, "Impressions", minute) == 8
    assert await _sum(cloudwatch, "Clicks", minute) == 2
    assert await _sum(cloudwatch, "ClickThroughRate", minute) == 25.0
