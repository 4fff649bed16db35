"""Dedup of client-supplied event ids, in two steps so that a crash never turns a retry into a loss.

``claim`` marks an id *pending* (short TTL) before the spool write; ``confirm`` marks it *seen* for the dedup
window once the event is durable. A retry that finds the id seen is a duplicate; one that finds it pending is
told to retry later (the first request is still in flight, or its process died before the write and the
pending mark expires within ``PENDING_TTL_S``), so a never-acknowledged event is never answered "duplicate".
"""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

PENDING_TTL_S = 10
Claim = Literal["new", "duplicate", "pending"]
_PENDING, _SEEN = b"p", b"1"


class Deduplicator:
    """Claim event ids in Redis so that duplicates within ``window_s`` are accepted once."""

    def __init__(self, redis: Redis, *, prefix: str, window_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ingest:dedup:"
        self._window = window_s

    async def claim(self, event_ids: list[str]) -> list[Claim]:
        """Claim each id (one pipeline); return whether it is new, already seen, or pending elsewhere."""
        if not event_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                key = self._prefix + event_id
                pipe.set(key, _PENDING, nx=True, ex=PENDING_TTL_S)
                pipe.get(key)
            results = await pipe.execute()
        claims: list[Claim] = []
        for index in range(0, len(results), 2):
            created, value = results[index], results[index + 1]
            if created:
                claims.append("new")
            else:
                claims.append("duplicate" if value == _SEEN else "pending")
        return claims

    async def confirm(self, event_ids: list[str]) -> None:
        """Mark claimed ids as seen for the dedup window (their events are durable now)."""
        if event_ids:
            async with self._redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.set(self._prefix + event_id, _SEEN, ex=self._window)
                await pipe.execute()

    async def release(self, event_ids: list[str]) -> None:
        """Give claimed ids back (their events were not accepted after all)."""
        if event_ids:
            await self._redis.delete(*(self._prefix + event_id for event_id in event_ids))
