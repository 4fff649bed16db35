"""Day markers: ``<source>/dt=YYYY-MM-DD/_COMPLETE`` once every event of a past day is archived.

Shipped days are noted in a Redis hash (field ``source|dt`` -> version, bumped on every ship), with the time of
the day's latest ship in a second hash: a day is written only once it has been quiet for ``quiet_s``, so a
backfill streaming in over several segments gets one marker at its end rather than one after its first. Each ingest
process publishes the days still waiting in its spool under a short-lived key. A day gets its marker when its
end plus the grace period has passed and no live spool holds it; the field is removed only if no ship bumped
it meanwhile, so late events for a marked day bring the day back and its marker is rewritten with new counts.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from redis.asyncio import Redis

from services.ingest.sinks import events_in_key
from services.ingest.spool import Day
from shared.contracts import day_marker_key, raw_day_prefix
from shared.logging import get_logger
from shared.messages import utc_now

log = get_logger(__name__)

PENDING_TTL_S = 30
_HDEL_IF_UNCHANGED = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


class DayMarkers:
    """Track shipped days and write their ``_COMPLETE`` markers when due."""

    def __init__(
        self,
        *,
        redis: Redis,
        prefix: str,
        bucket: str,
        grace_s: float,
        instance_id: str,
        quiet_s: float = 0.0,
        slot_id: str = "",
    ) -> None:
        self._redis = redis
        self._bucket = bucket
        self._grace = timedelta(seconds=grace_s)
        self._quiet_s = quiet_s
        self._open_key = f"{prefix}:ingest:open-days"
        self._shipped_at_key = f"{prefix}:ingest:open-days-shipped-at"
        self._pending_prefix = f"{prefix}:ingest:pending:"
        self._pending_key = f"{self._pending_prefix}{instance_id}"
        # Days a stopped process left in its spool (no TTL): kept until that spool is opened again.
        self._stranded_key = f"{self._pending_prefix}stranded-{slot_id or instance_id}"
        self._hdel_if_unchanged = redis.register_script(_HDEL_IF_UNCHANGED)
        # Present while the open-days hash can be trusted; gone when Redis lost its data (flushed, restarted empty).
        self._intact_key = f"{prefix}:ingest:open-days-intact"

    async def note_shipped(self, days: set[Day]) -> None:
        """Record that events of these days reached the archive."""
        if not days:
            return
        now = utc_now().timestamp()
        async with self._redis.pipeline(transaction=False) as pipe:
            for source, dt in days:
                pipe.hincrby(self._open_key, f"{source}|{dt}", 1)
                pipe.hset(self._shipped_at_key, f"{source}|{dt}", now)
            await pipe.execute()

    async def publish_pending(self, days: set[Day]) -> None:
        """Tell sibling processes which days this process's spool still holds."""
        value = orjson.dumps(sorted(f"{source}|{dt}" for source, dt in days))
        await self._redis.set(self._pending_key, value, ex=PENDING_TTL_S)

    async def hold(self, days: set[Day], *, name: str, ttl_s: float) -> None:
        """Hold ``days`` from their markers for ``ttl_s`` (events on their way by another path, e.g. Firehose)."""
        value = orjson.dumps(sorted(f"{source}|{dt}" for source, dt in days))
        await self._redis.set(f"{self._pending_prefix}{name}", value, ex=max(1, int(ttl_s) + 1))

    async def withdraw(self) -> None:
        """Stop announcing pending days (clean shutdown)."""
        await self._redis.delete(self._pending_key)

    async def strand(self, days: set[Day]) -> None:
        """Announce, without expiry, the days a stopping process leaves in its spool; stop the short-lived key.

        A replica scaled away may never come back: its days stay unmarked rather than marked without its events.
        """
        value = orjson.dumps(sorted(f"{source}|{dt}" for source, dt in days))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._stranded_key, value)
            pipe.delete(self._pending_key)
            await pipe.execute()
        log.warning("pending_days_stranded", days=len(days), key=self._stranded_key)

    async def reclaim(self, days: set[Day]) -> None:
        """On opening a spool: announce what it holds under this process's key, then drop its stranded days."""
        await self.publish_pending(days)
        await self._redis.delete(self._stranded_key)

    async def _pending_elsewhere(self) -> set[str]:
        held: set[str] = set()
        keys = [key async for key in self._redis.scan_iter(match=f"{self._pending_prefix}*", count=100)]
        keys = [key for key in keys if key.decode() != self._pending_key]
        if keys:
            for value in await self._redis.mget(keys):
                if value:
                    held.update(orjson.loads(value))
        return held

    def is_due(self, dt: str, now: datetime) -> bool:
        """Return whether day ``dt`` has ended more than the grace period ago."""
        day_end = datetime.combine(date.fromisoformat(dt), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
        return now >= day_end + self._grace

    async def rebuild_if_lost(self, s3: Any) -> set[Day]:
        """Re-open every archived day whose marker is missing or stale, once, after Redis lost the open days.

        The open-days hash is derived state, the archive is the truth: without this, a day shipped just before a
        FLUSHALL (or a Redis that came back empty) would never get its marker, and so would never be loaded.
        Costs one listing of the raw bucket (and a read of each marker) per loss of Redis's data; idempotent, so
        several processes doing it at once is harmless. Returns the days re-opened.
        """
        if await self._redis.exists(self._intact_key):
            return set()
        reopened: set[Day] = set()
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Delimiter="/"):
            for source_prefix in page.get("CommonPrefixes", []):
                source = source_prefix["Prefix"].rstrip("/")
                async for days in paginator.paginate(Bucket=self._bucket, Prefix=f"{source}/dt=", Delimiter="/"):
                    for day_prefix in days.get("CommonPrefixes", []):
                        dt = day_prefix["Prefix"].rstrip("/").split("dt=", 1)[1]
                        if not await self._marker_current(s3, source, dt):
                            reopened.add((source, dt))
        await self.note_shipped(reopened)
        await self._redis.set(self._intact_key, "1")
        if reopened:
            log.warning("open_days_rebuilt_from_archive", days=len(reopened))
        return reopened

    async def _marker_current(self, s3: Any, source: str, dt: str) -> bool:
        events = 0
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{raw_day_prefix(source, dt)}hour="):
            events += sum(events_in_key(item["Key"]) for item in page.get("Contents", []))
        try:
            marker = await s3.get_object(Bucket=self._bucket, Key=day_marker_key(source, dt))
            async with marker["Body"] as body:
                return int(json.loads(await body.read()).get("events", -1)) == events
        except s3.exceptions.NoSuchKey:
            return events == 0

    async def write_due(self, s3: Any, *, local_pending: set[Day], now: datetime | None = None) -> list[str]:
        """Write the markers of every shipped day that is due and held by no spool; return their keys."""
        await self.rebuild_if_lost(s3)
        opened = await self._redis.hgetall(self._open_key)
        if not opened:
            return []
        now = now or utc_now()
        shipped_at = await self._redis.hgetall(self._shipped_at_key)
        quiet_since = now.timestamp() - self._quiet_s
        candidates = {}
        for field_, version in opened.items():
            source, dt = field_.decode().split("|", 1)
            if float(shipped_at.get(field_, 0)) > quiet_since:
                continue  # events of this day are still arriving
            if self.is_due(dt, now) and (source, dt) not in local_pending:
                candidates[(source, dt)] = version.decode()
        if not candidates:
            return []
        elsewhere = await self._pending_elsewhere()
        written = []
        for (source, dt), version in sorted(candidates.items()):
            if f"{source}|{dt}" in elsewhere:
                continue
            key = await self.write_marker(s3, source=source, dt=dt)
            await self._hdel_if_unchanged(keys=[self._open_key, self._shipped_at_key], args=[f"{source}|{dt}", version])
            written.append(key)
        return written

    async def write_marker(self, s3: Any, *, source: str, dt: str) -> str:
        """Count the day's archived objects and events and write its marker; return the marker key."""
        objects = events = 0
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{raw_day_prefix(source, dt)}hour="):
            for item in page.get("Contents", []):
                objects += 1
                events += events_in_key(item["Key"])
        body = {
            "source": source,
            "dt": dt,
            "events": events,
            "objects": objects,
            "written_at": utc_now().isoformat().replace("+00:00", "Z"),
        }
        key = day_marker_key(source, dt)
        payload = json.dumps(body).encode()
        await s3.put_object(Bucket=self._bucket, Key=key, Body=payload, ContentType="application/json")
        log.info("day_marker_written", source=source, dt=dt, events=events, objects=objects)
        return key
