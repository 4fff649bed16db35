"""Hot job progress and the resume checkpoint in Redis; the cancel flag."""

from __future__ import annotations

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

    async def request_cancel(self, job_id: str) -> None:
        """Flag a job for cancellation; the runner stops before its next batch."""
        await self.redis.set(f"{_key(self.prefix, job_id)}:cancel", b"1", ex=7 * 24 * 3600)

    async def cancel_requested(self, job_id: str) -> bool:
        """Return whether cancellation was requested."""
        return bool(await self.redis.exists(f"{_key(self.prefix, job_id)}:cancel"))


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
