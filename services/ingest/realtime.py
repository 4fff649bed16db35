"""Per-minute impression and click counters in Redis, overall and per ad.

Requests only bump in-process counts; a background flush sends them to Redis in one pipeline per flush, so
the hot path never waits on a Redis round trip per event. Each minute is one hash: ``i``/``c`` overall and
``i:<ad>``/``c:<ad>`` per ad; it expires after the retention period.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.ingest.models import Counts, MinuteCounts, RealtimeResponse
from shared.logging import get_logger

log = get_logger(__name__)

_FIELD = {"impression": "i", "click": "c"}


def ctr(impressions: int, clicks: int) -> float:
    """Return clicks / impressions (0.0 without impressions)."""
    return clicks / impressions if impressions else 0.0


def _counts(impressions: int, clicks: int) -> Counts:
    return Counts(impressions=impressions, clicks=clicks, ctr=ctr(impressions, clicks))


class RealtimeCounters:
    """Count impressions and clicks per minute and read them back."""

    def __init__(self, redis: Redis, *, prefix: str, retention_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ingest:rt:"
        self._retention = retention_s
        self._pending: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add_many(self, counts: Mapping[tuple[str, str | None], int], *, at: float | None = None) -> None:
        """Count accepted events, given as {(event type, ad id): how many}, in the minute of ``at`` (now)."""
        minute = int((at if at is not None else time.time()) // 60 * 60)
        bucket = self._pending[minute]
        for (event_type, ad_id), count in counts.items():
            field_ = _FIELD.get(event_type)
            if field_ is None:
                continue
            bucket[field_] += count
            if ad_id:
                bucket[f"{field_}:{ad_id}"] += count

    async def flush(self) -> None:
        """Send the pending counts to Redis in one pipeline."""
        if not self._pending:
            return
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(int))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for minute, fields in pending.items():
                    key = f"{self._prefix}{minute}"
                    for name, value in fields.items():
                        pipe.hincrby(key, name, value)
                    pipe.expire(key, self._retention)
                await pipe.execute()
        except Exception:
            # Put the counts back so a Redis blip delays them instead of losing them.
            for minute, fields in pending.items():
                for name, value in fields.items():
                    self._pending[minute][name] += value
            raise

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Flush every ``interval_s`` until ``stop`` is set, then flush once more."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("realtime_flush_failed", error=type(exc).__name__)

    async def minute_totals(self, minute: int) -> tuple[int, int]:
        """Return (impressions, clicks) of one minute (epoch seconds at the minute's start)."""
        values = await self._redis.hmget(f"{self._prefix}{minute}", ["i", "c"])
        return int(values[0] or 0), int(values[1] or 0)

    async def read(self, minutes: int, *, now: float | None = None) -> RealtimeResponse:
        """Return the last ``minutes`` minutes (including the current one), oldest first."""
        current = int((now if now is not None else time.time()) // 60 * 60)
        starts = [current - 60 * back for back in range(minutes - 1, -1, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(f"{self._prefix}{start}")
            hashes = await pipe.execute()
        series: list[MinuteCounts] = []
        total_i = total_c = 0
        per_ad: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for start, raw in zip(starts, hashes, strict=True):
            values = {name.decode(): int(value) for name, value in raw.items()}
            ads: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for name, value in values.items():
                if name.startswith(("i:", "c:")):
                    ads[name[2:]][0 if name[0] == "i" else 1] += value
            for ad_id, (imp, clk) in ads.items():
                per_ad[ad_id][0] += imp
                per_ad[ad_id][1] += clk
            imp, clk = values.get("i", 0), values.get("c", 0)
            total_i += imp
            total_c += clk
            series.append(
                MinuteCounts(
                    minute=datetime.fromtimestamp(start, UTC),
                    impressions=imp,
                    clicks=clk,
                    ctr=ctr(imp, clk),
                    ads={ad_id: _counts(*pair) for ad_id, pair in sorted(ads.items())},
                )
            )
        return RealtimeResponse(
            minutes=minutes,
            series=series,
            totals=_counts(total_i, total_c),
            by_ad={ad_id: _counts(*pair) for ad_id, pair in sorted(per_ad.items())},
        )
