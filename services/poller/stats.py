"""Polling statistics in Redis, per tick (for the benchmark) and per minute (for the page)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.poller.keys import Keys
from services.poller.models import MinuteStats, PollerStats
from services.poller.registry import Registry

STAT_FIELDS = ("scheduled", "reads", "on_time", "late", "failures", "missed")
TTL_S = 3 * 3600


class StatsRecorder:
    """Accumulate counters in memory and add them to Redis on flush."""

    def __init__(self, redis: Redis, *, keys: Keys, interval_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.interval = interval_s
        self._ticks: defaultdict[int, list[int]] = defaultdict(lambda: [0] * len(STAT_FIELDS))
        self.totals = [0] * len(STAT_FIELDS)

    def tick(self, tick: int) -> list[int]:
        """Return the mutable counters of ``tick``."""
        return self._ticks[tick]

    async def flush(self) -> None:
        """Add the accumulated counters to the tick and minute hashes."""
        ticks, self._ticks = self._ticks, defaultdict(lambda: [0] * len(STAT_FIELDS))
        if not ticks:
            return
        pipe = self.redis.pipeline(transaction=False)
        for tick, counts in ticks.items():
            minute = int(tick * self.interval // 60)
            for key in (f"{self.keys.prefix}:tick:{tick}", self.keys.stats(minute)):
                for name, value in zip(STAT_FIELDS, counts, strict=True):
                    if value:
                        pipe.hincrby(key, name, value)
                pipe.expire(key, TTL_S)
            for index, value in enumerate(counts):
                self.totals[index] += value
        await pipe.execute()


async def tick_stats(redis: Redis, *, keys: Keys, tick: int) -> dict[str, int]:
    """Return the counters of one tick (all replicas together)."""
    raw = await redis.hgetall(f"{keys.prefix}:tick:{tick}")
    return {name: int(raw.get(name.encode(), 0)) for name in STAT_FIELDS}


async def recent_minutes(redis: Redis, *, keys: Keys, minutes: int, now: datetime | None = None) -> list[MinuteStats]:
    """Return the last ``minutes`` whole minutes' figures, oldest first."""
    current = int((now or datetime.now(UTC)).timestamp() // 60)
    pipe = redis.pipeline(transaction=False)
    wanted = list(range(current - minutes + 1, current + 1))
    for minute in wanted:
        pipe.hgetall(keys.stats(minute))
    out = []
    for minute, raw in zip(wanted, await pipe.execute(), strict=True):
        values = {name: int(raw.get(name.encode(), 0)) for name in STAT_FIELDS}
        out.append(
            MinuteStats(
                minute=datetime.fromtimestamp(minute * 60, UTC),
                reads=values["reads"],
                on_time=values["on_time"],
                late=values["late"],
                failures=values["failures"],
            )
        )
    return out


async def poller_stats(registry: Registry, *, minutes: int) -> PollerStats:
    """Return devices by state, the last ``minutes`` minutes' figures and their on-time percentage."""
    by_state = await registry.count_by_state()
    recent = await recent_minutes(registry.redis, keys=registry.keys, minutes=minutes)
    reads = sum(m.on_time + m.late for m in recent)
    on_time = sum(m.on_time for m in recent)
    return PollerStats(
        devices_by_state=by_state, minutes=recent, on_time_pct=round(100 * on_time / reads, 3) if reads else None
    )
