"""Replay's PutRecords: batches within 500 records / 5 MiB, paced, slowing down when throttled.

The put client and its retry of failed records are the shared ones (``shared.kinesis_put``); replay adds its
batching (one record per partition key per batch, so per-key order holds), pacing and accounting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.kinesis_put import THROTTLED, Entry, botocore_put_records, put_with_retry
from shared.logging import get_logger

log = get_logger(__name__)

MAX_RECORD_BYTES = 1024 * 1024
# Pause between batches per unit of slowdown after throttling (decays as batches succeed again).
THROTTLE_PAUSE_S = 0.05


@dataclass
class PutOutcome:
    """What happened to one batch: how many landed, how many were given up on."""

    emitted: int = 0
    failed: int = 0
    throttled: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Pacer:
    """Pace emission to ``rate`` records/s (if any) and back off multiplicatively when Kinesis throttles."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._started: float | None = None
        self._scheduled = 0
        self.slowdown = 1.0

    async def wait_for(self, count: int) -> None:
        """Wait until ``count`` more records may be sent (longer while Kinesis has been throttling us)."""
        if self.slowdown > 1.0:
            await asyncio.sleep(min(2.0, THROTTLE_PAUSE_S * (self.slowdown - 1.0)))
        now = time.monotonic()
        if self._started is None:
            self._started = now
        if self.rate:
            due = self._started + self._scheduled / self.rate
            if due > now:
                await asyncio.sleep(due - now)
        self._scheduled += count

    async def finish(self) -> None:
        """Wait out the last batch's share of time so the overall rate holds."""
        if self.rate and self._started is not None:
            due = self._started + self._scheduled / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def throttled(self) -> None:
        """Record a throttling answer: later back-offs grow."""
        self.slowdown = min(self.slowdown * 2, 64.0)

    def succeeded(self) -> None:
        """Record a clean batch: recover speed gradually."""
        self.slowdown = max(1.0, self.slowdown * 0.8)


def plan_batches(
    records: Iterable[tuple[str, bytes]], *, max_records: int = 500, max_bytes: int = 5 * 1024 * 1024
) -> Iterator[list[tuple[str, bytes]]]:
    """Group (partition key, data) into PutRecords batches; a key appears once per batch so per-key order holds."""
    batch: list[tuple[str, bytes]] = []
    keys: set[str] = set()
    size = 0
    for key, data in records:
        record_size = len(data) + len(key.encode())
        if batch and (len(batch) >= max_records or size + record_size > max_bytes or key in keys):
            yield batch
            batch, keys, size = [], set(), 0
        batch.append((key, data))
        keys.add(key)
        size += record_size
    if batch:
        yield batch


def _partition_key(key: str) -> str:
    # Kinesis partition keys are 1..256 Unicode characters.
    return (key or "-")[:256]


async def put_batch(
    kinesis: Any,
    stream: str,
    batch: list[tuple[str, bytes]],
    *,
    pacer: Pacer,
    max_attempts: int = 8,
    backoff_base_s: float = 0.05,
    backoff_max_s: float = 2.0,
    refuse: Callable[[bytes], str | None] | None = None,
) -> PutOutcome:
    """Put one batch through the shared put client, retrying only the records that failed, with jittered backoff.

    ``refuse`` names why a record must not be put (counted failed under that code), or returns None.
    """
    outcome = PutOutcome()
    entries: list[Entry] = []
    for key, data in batch:
        reason = "RecordTooLarge" if len(data) + len(key.encode()) > MAX_RECORD_BYTES else None
        if reason is None and refuse is not None:
            reason = refuse(data)
        if reason is not None:
            outcome.failed += 1
            outcome.errors[reason] = outcome.errors.get(reason, 0) + 1
        else:
            entries.append((data, _partition_key(key)))
    if not entries:
        return outcome

    def observe(failures: dict[int, str]) -> None:
        if not failures:
            pacer.succeeded()
        elif THROTTLED in failures.values():
            pacer.throttled()

    def backoff(attempt: int) -> float:
        # Read at each pause: a stream that keeps throttling us waits longer.
        delay = min(backoff_max_s, backoff_base_s * (2 ** (attempt - 1)) * pacer.slowdown)
        return delay * (0.5 + random.random() / 2)

    result = await put_with_retry(
        botocore_put_records(kinesis, stream),
        entries,
        stream=stream,
        max_attempts=max_attempts,
        backoff=backoff,
        on_attempt=observe,
    )
    outcome.emitted, outcome.throttled = result.emitted, result.throttled
    for _, code in result.given_up:
        outcome.failed += 1
        outcome.errors[code] = outcome.errors.get(code, 0) + 1
    if result.given_up:
        log.warning("replay_records_given_up", stream=stream, count=len(result.given_up))
    return outcome
