"""Per-client token buckets for the public beacon endpoints (in process: cheap on the hot path)."""

from __future__ import annotations

import time


class RateLimiter:
    """Allow ``rate`` requests per second per client with bursts up to ``burst``."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str) -> bool:
        """Take one token for ``client``; return False when its bucket is empty."""
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        if len(self._buckets) > 100_000:
            self._buckets.clear()
        self._buckets[client] = (tokens - 1.0, now)
        return True

    def retry_after_s(self) -> int:
        """Return how long a limited client should wait for one token."""
        return max(1, int(1.0 / self.rate + 0.999)) if self.rate > 0 else 60
