"""Dedup of client-supplied event ids: the first claim of an id within the window wins (Redis SET NX)."""

from __future__ import annotations

from redis.asyncio import Redis


class Deduplicator:
    """Claim event ids in Redis so that duplicates within ``window_s`` are accepted once."""

    def __init__(self, redis: Redis, *, prefix: str, window_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ingest:dedup:"
        self._window = window_s

    async def claim(self, event_ids: list[str]) -> list[bool]:
        """Claim each id (one pipeline); return for each whether this call claimed it first."""
        if not event_ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.set(self._prefix + event_id, b"1", nx=True, ex=self._window)
            results = await pipe.execute()
        return [bool(result) for result in results]

    async def release(self, event_ids: list[str]) -> None:
        """Give claimed ids back (their events were not accepted after all)."""
        if event_ids:
            await self._redis.delete(*(self._prefix + event_id for event_id in event_ids))
