"""Prepare a sandbox for one query: mirror what the SQL needs, read the live tail when it is referenced."""

from __future__ import annotations

import asyncio
import re

from redis.asyncio import Redis

from services.replay.archive import TimeWindow, list_top_level, sync_curated, sync_raw
from services.replay.archives import with_archived_tails
from services.replay.live import read_live_tail
from services.replay.sandbox import Sandbox, SandboxLimits
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients


def _mentions(sql: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", sql, flags=re.IGNORECASE) is not None


async def open_sandbox(
    *,
    settings: ReplaySettings,
    aws: AwsClients,
    sql: str,
    sources: list[str] | None = None,
    window: TimeWindow | None = None,
    redis: Redis | None = None,
) -> Sandbox:
    """Mirror the archive partitions and curated tables ``sql`` can read, then open a sandbox over them.

    ``sources`` and ``window`` limit both what is mirrored and what ``raw_events`` shows (whole dt/hour partitions),
    so results never depend on what an earlier query happened to mirror. With ``redis``, the live tail also holds
    the streams registered for archiving (``POST /v1/archives``), as raw records.
    """
    s3 = await aws.get("s3")
    cache = settings.cache_dir
    live = None
    if _mentions(sql, "raw_events") or _mentions(sql, "all_events"):
        await sync_raw(
            s3,
            bucket=settings.bucket("raw"),
            cache_dir=cache,
            sources=sources,
            window=window,
            concurrency=settings.listing_concurrency,
        )
    if _mentions(sql, "live_events") or _mentions(sql, "all_events"):
        kinesis = await aws.get("kinesis")
        live = await read_live_tail(kinesis, settings.stream("events"), settings.live_max_records)
        if redis is not None:
            live = await with_archived_tails(live, kinesis=kinesis, redis=redis, settings=settings)
    curated_bucket = settings.bucket("curated")
    # Names starting with "_" hold no table (shared.contracts' ``_schemas/`` and ``_views/``).
    tables = [t for t in await list_top_level(s3, curated_bucket) if not t.startswith("_")]
    wanted = [t for t in tables if _mentions(sql, t) or _mentions(sql, f"advertising_{t}")]
    if wanted:
        await sync_curated(s3, bucket=curated_bucket, cache_dir=cache, tables=wanted)
    return await asyncio.to_thread(
        Sandbox,
        cache,
        raw_bucket=settings.bucket("raw"),
        curated_bucket=curated_bucket,
        live=live,
        sources=sources,
        window=window,
        limits=SandboxLimits(
            memory_limit=settings.query_memory_limit,
            temp_parent=settings.temp_dir,
            max_temp_size=settings.query_max_temp_size,
        ),
    )
