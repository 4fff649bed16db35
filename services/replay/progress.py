"""Hot job progress and the resume checkpoint in Redis; the cancel flag."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis

from services.replay.models import Progress

_FIELDS = ("total", "read", "emitted", "failed", "offset", "emit_started", "emit_elapsed")


def _key(prefix: str, job_id: str) -> str:
    return f"{prefix}:replay:job:{job_id}"


class ProgressStore:
    """Progress counters of replay jobs; ``offset`` is the resume checkpoint (rows fully put)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    async def read(self, job_id: str) -> dict[str, float]:
        """Return the stored counters of a job (missing ones absent)."""
        raw = await self.redis.hgetall(_key(self.prefix, job_id))
        return {k.decode(): float(v) for k, v in raw.items() if k.decode() in _FIELDS}

    async def write(self, job_id: str, **values: Any) -> None:
        """Set counters of a job."""
        await self.redis.hset(_key(self.prefix, job_id), mapping={k: v for k, v in values.items() if v is not None})

    @asynccontextmanager
    async def lease(self, job_id: str, ttl_s: float = 15.0) -> AsyncIterator[JobLease]:
        """Hold the job's run lease for the block, or raise LeaseHeld."""
        lease = JobLease(self.redis, f"{_key(self.prefix, job_id)}:lease", ttl_s)
        if not await lease.acquire():
            raise LeaseHeld(job_id)
        beat = asyncio.create_task(lease.heartbeat())
        try:
            yield lease
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await asyncio.shield(lease.release())

    async def lease_held(self, job_id: str) -> bool:
        """Return whether some runner holds the job's lease."""
        return bool(await self.redis.exists(f"{_key(self.prefix, job_id)}:lease"))

    async def checkpoint(self, job_id: str, **values: Any) -> bool:
        """Write counters and the resume offset in one round trip; return whether cancellation was requested."""
        key = _key(self.prefix, job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=values)
            pipe.exists(f"{key}:cancel")
            _, cancel = await pipe.execute()
        return bool(cancel)

    async def request_cancel(self, job_id: str) -> None:
        """Flag a job for cancellation; the runner stops before its next batch."""
        await self.redis.set(f"{_key(self.prefix, job_id)}:cancel", b"1", ex=7 * 24 * 3600)

    async def cancel_requested(self, job_id: str) -> bool:
        """Return whether cancellation was requested."""
        return bool(await self.redis.exists(f"{_key(self.prefix, job_id)}:cancel"))


_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class LeaseHeld(Exception):
    """Another runner holds the job's lease."""


class JobLease:
    """Exclusive right to run a job, kept alive by a heartbeat; it lapses ``ttl_s`` after its holder dies."""

    def __init__(self, redis: Redis, key: str, ttl_s: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl_ms = int(ttl_s * 1000)
        self.owner = uuid.uuid4().hex

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(await self.redis.set(self.key, self.owner, nx=True, px=self.ttl_ms))

    async def heartbeat(self) -> None:
        """Extend the lease every third of its lifetime until cancelled."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            await self.redis.eval(_REFRESH, 1, self.key, self.owner, self.ttl_ms)

    async def release(self) -> None:
        """Give the lease back (only if still ours)."""
        await self.redis.eval(_RELEASE, 1, self.key, self.owner)


def progress_view(counters: dict[str, float], *, fallback: dict[str, int | None]) -> Progress:
    """Build the API progress (percentage, rate, ETA) from counters, or the persisted ones."""
    total = counters.get("total", fallback.get("total"))
    read = int(counters.get("read", fallback.get("read") or 0))
    emitted = int(counters.get("emitted", fallback.get("emitted") or 0))
    failed = int(counters.get("failed", fallback.get("failed") or 0))
    elapsed = counters.get("emit_elapsed", 0.0)
    rate = emitted / elapsed if elapsed > 0 else 0.0
    percentage = 100.0 if total == 0 else (100.0 * read / total if total else 0.0)
    eta = (total - read) / rate if total is not None and rate > 0 else None
    return Progress(
        total=int(total) if total is not None else None,
        read=read,
        emitted=emitted,
        failed=failed,
        percentage=round(min(percentage, 100.0), 2),
        rate=round(rate, 2),
        eta_s=round(eta, 2) if eta is not None else None,
    )
