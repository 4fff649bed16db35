"""Post readings to ingest's ``POST /v1/meter-reads`` in batches.

Readings wait in a bounded in-memory buffer. A batch leaves the buffer only when ingest accepted
it (2xx); transport errors, 5xx, 429 and auth errors keep it and back off. A batch ingest rejects
as invalid (other 4xx) can never succeed, so it is logged with its count and dropped; overflow
of the buffer drops the oldest readings, also logged and counted. The hourly logs stay the
durable record either way.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import httpx
import orjson

from shared.logging import get_logger

log = get_logger(__name__)

METER_READS_PATH = "/v1/meter-reads"


class IngestPoster:
    """Batch, post and retry readings for ingest."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str | None,
        batch_size: int = 500,
        buffer_max: int = 200_000,
        timeout_s: float = 10.0,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + METER_READS_PATH
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.batch_size = batch_size
        self.buffer_max = buffer_max
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.buffer: deque[dict[str, Any]] = deque()
        self.posted = 0
        self.dropped = 0
        self.failures = 0
        self._retry_at = 0.0
        self._backoff = 1.0

    def add(self, read: dict[str, Any]) -> None:
        """Queue one reading (ingest's meter-read shape)."""
        self.buffer.append(read)
        if len(self.buffer) > self.buffer_max:
            overflow = len(self.buffer) - self.buffer_max
            for _ in range(overflow):
                self.buffer.popleft()
            self.dropped += overflow
            log.error("ingest_buffer_overflow", dropped=overflow, dropped_total=self.dropped)

    async def flush(self) -> int:
        """Post queued readings batch by batch until the buffer is empty or ingest fails; return reads posted."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return 0
        posted = 0
        while self.buffer:
            count = min(self.batch_size, len(self.buffer))
            batch = [self.buffer[i] for i in range(count)]
            outcome = await self._post(batch)
            if outcome == "retry":
                self.failures += 1
                self._retry_at = loop.time() + self._backoff
                self._backoff = min(self._backoff * 2, self.max_backoff_s)
                break
            for _ in range(count):
                self.buffer.popleft()
            if outcome == "rejected":
                self.dropped += count
                continue
            posted += count
            self._backoff = 1.0
        self.posted += posted
        return posted

    async def _post(self, batch: list[dict[str, Any]]) -> str:
        try:
            response = await self.http.post(
                self.url, content=orjson.dumps({"reads": batch}), headers=self.headers, timeout=self.timeout_s
            )
        except httpx.HTTPError as exc:
            log.warning("ingest_post_failed", error=type(exc).__name__, reads=len(batch), buffered=len(self.buffer))
            return "retry"
        status = response.status_code
        if 200 <= status < 300:
            return "ok"
        if status >= 500 or status in (401, 403, 404, 408, 429):
            log.warning("ingest_post_failed", status=status, reads=len(batch), buffered=len(self.buffer))
            return "retry"
        log.error("ingest_rejected_batch", status=status, reads=len(batch), body=response.text[:500])
        return "rejected"
