"""The shipper: a background task that drains sealed spool segments, in order, to the archive and the stream.

A segment leaves the spool only after its archive objects, bad rows and stream records are all written. While
a sink is down the segment stays and is retried with backoff (the spool keeps filling up to its bound). Because
segments are immutable and archive keys derive from the segment name, a re-ship after a crash overwrites the
same objects instead of duplicating them; the stream is at-least-once (consumers dedup on ``event_id``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter, Gauge

from services.ingest.analytics import UNMAPPED
from services.ingest.badrows import write_bad_rows
from services.ingest.firehose import FirehoseArchive
from services.ingest.markers import DayMarkers
from services.ingest.settings import IngestSettings
from services.ingest.sinks import SinkClients, put_archive_object, put_stream_records
from services.ingest.spool import Day, Segment, Slot, Spool, read_segment_lines
from shared.contracts import partition_key_of, raw_object_key
from shared.logging import get_logger
from shared.messages import utc_now

log = get_logger(__name__)

SHIPPED = Counter("headwater_ingest_shipped_events_total", "Events shipped to the archive")
BAD_ROWS = Counter("headwater_ingest_bad_rows_total", "Accepted events that failed validation", ["reason"])
SHIP_FAILURES = Counter("headwater_ingest_ship_failures_total", "Failed segment shipments")
SPOOL_BYTES = Gauge("headwater_ingest_spool_bytes", "Bytes waiting in the spool")


@dataclass
class ShipResult:
    """What one segment produced."""

    events: int = 0
    bad: int = 0
    objects: list[str] = field(default_factory=list)
    days: set[Day] = field(default_factory=set)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None


def validate_record(record: Any, line: bytes, settings: IngestSettings) -> str | None:
    """Return why an accepted record cannot be archived (None when it is fine); depends only on the record."""
    if not isinstance(record, dict):
        return "record is not a JSON object"
    if UNMAPPED in record:
        return f"unmapped {record[UNMAPPED]}"
    for key in ("event_id", "type", "source"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"missing {key}"
    event_time, received_at = _parse_time(record.get("event_time")), _parse_time(record.get("received_at"))
    if event_time is None or received_at is None:
        return "event_time or received_at is not ISO-8601 UTC"
    skew = (event_time - received_at).total_seconds()
    if skew > settings.max_clock_skew_s:
        return f"event_time is {skew:.0f}s after received_at (max {settings.max_clock_skew_s:.0f}s)"
    if -skew > settings.max_event_age_s:
        return f"event_time is {-skew:.0f}s before received_at (max {settings.max_event_age_s:.0f}s)"
    if len(line) > settings.max_record_bytes:
        return f"record is {len(line)} bytes (max {settings.max_record_bytes})"
    return None


@dataclass
class SplitSegment:
    """A segment sorted for the sinks: archive partitions, stream entries, and bad rows."""

    partitions: dict[tuple[str, str, str], list[bytes]] = field(default_factory=lambda: defaultdict(list))
    stream_entries: list[tuple[bytes, str]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)


def split_segment(segment: Segment, settings: IngestSettings) -> SplitSegment:
    """Read a sealed segment and sort its records by (source, dt, hour); set invalid ones aside as bad rows."""
    split = SplitSegment()
    keys = settings.partition_keys
    for line in read_segment_lines(segment.path):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        reason = validate_record(record, line, settings) if record is not None else "not valid JSON"
        if reason is not None:
            original = record if record is not None else line.decode("utf-8", "replace")
            split.bad.append({"reason": reason, "segment": segment.name, "original": original})
            BAD_ROWS.labels(reason.split(" ", 1)[0]).inc()
            continue
        event_time = record["event_time"]
        split.partitions[(record["source"], event_time[:10], event_time[11:13])].append(line)
        # Keyed by entity (see shared.contracts.partition_key_of): one entity's records share a shard, in order.
        split.stream_entries.append((line, partition_key_of(record, keys)))
    return split


class Shipper:
    """Drain the spool to S3 and Kinesis; write bad rows and day markers."""

    def __init__(self, *, settings: IngestSettings, spool: Spool, aws: SinkClients, markers: DayMarkers) -> None:
        self.settings = settings
        self.spool = spool
        self.aws = aws
        self.markers = markers
        self.firehose_archive = FirehoseArchive(settings=settings, markers=markers, name=spool.run_id)
        self.healthy = True
        self.last_error: str | None = None
        # Read at scrape time: the shipper can spend minutes inside one drain while the spool grows.
        SPOOL_BYTES.set_function(lambda: self.spool.bytes_used)

    async def run(self, stop: asyncio.Event) -> None:
        """Ship until ``stop`` is set: seal due segments, drain sealed ones in order, write due markers."""
        backoff = 0.2
        while not stop.is_set():
            try:
                await self.spool.seal(max_age_s=self.settings.flush_interval_s)
                await self.drain()
                await self.drain_orphans()
                await self.firehose_archive.settle_due(await self.aws.get("s3"))
                await self.markers.publish_pending(self.spool.pending_days())
                await self.markers.write_due(await self.aws.get("s3"), local_pending=self.spool.pending_days())
                self.healthy, self.last_error, backoff = True, None, 0.2
                delay = min(0.25, self.settings.flush_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                SHIP_FAILURES.inc()
                self.healthy, self.last_error = False, f"{type(exc).__name__}: {exc}"[:300]
                log.warning("ship_failed", error=self.last_error, retry_in_s=backoff)
                delay, backoff = backoff, min(backoff * 2, self.settings.shipper_backoff_max_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def final_drain(self, *, timeout_s: float) -> None:
        """Try once, within ``timeout_s``, to ship what the closed spool still holds (what is left stays on disk)."""
        try:
            await asyncio.wait_for(self.drain(), timeout=timeout_s)
        except Exception as exc:
            log.warning("final_drain_incomplete", error=type(exc).__name__, spool_bytes=self.spool.bytes_used)

    async def drain(self) -> int:
        """Ship every sealed segment of this process's spool, oldest first; return how many were shipped."""
        shipped = 0
        for segment in self.spool.sealed():
            await self.ship_segment(segment)
            await self.spool.remove(segment)
            shipped += 1
        return shipped

    async def drain_orphans(self) -> None:
        """Adopt slots whose owner died (another process, or a previous run) and ship what they hold."""
        for slot in await asyncio.to_thread(self.spool.orphan_slots):
            try:
                await self._drain_slot(slot)
            finally:
                slot.release()

    async def _drain_slot(self, slot: Slot) -> None:
        segments = await asyncio.to_thread(slot.recover)
        log.info("orphan_slot_adopted", slot=slot.path.name, segments=len(segments))
        for segment in segments:
            await self.ship_segment(segment)
            await asyncio.to_thread(segment.path.unlink, missing_ok=True)

    async def ship_segment(self, segment: Segment) -> ShipResult:
        """Write one sealed segment to the archive, the bad-rows bucket and the stream."""
        # Reading and sorting a segment is CPU work: done off the event loop that answers requests.
        split = await asyncio.to_thread(split_segment, segment, self.settings)
        partitions, stream_entries, bad = split.partitions, split.stream_entries, split.bad
        result = ShipResult()
        s3 = await self.aws.get("s3")
        raw_bucket = self.settings.bucket("raw")
        puts = []
        via_firehose: list[bytes] = []
        firehose_days: set[Day] = set()
        for (source, dt, hour), part in sorted(partitions.items()):
            if self.firehose_archive.archives(source):
                via_firehose += part
                firehose_days.add((source, dt))
                result.events += len(part)
                continue
            key = raw_object_key(source, dt, hour, segment.name, len(part))
            puts.append(put_archive_object(s3, bucket=raw_bucket, key=key, lines=part))
            result.objects.append(key)
            result.days.add((source, dt))
            result.events += len(part)
        await asyncio.gather(*puts)
        if via_firehose:
            await self.firehose_archive.put(await self.aws.get("firehose"), via_firehose, firehose_days)
        if bad:
            # Dated by the rows' acceptance (not the clock) so a re-ship overwrites the same object.
            first = bad[0]["original"]
            received = first.get("received_at") if isinstance(first, dict) else None
            dt = received[:10] if isinstance(received, str) else utc_now().date().isoformat()
            await write_bad_rows(
                s3, bucket=self.settings.bucket("bad-rows"), dt=dt, segment_name=segment.name, rows=bad
            )
            result.bad = len(bad)
        if stream_entries and self.settings.kinesis_enabled:
            stream = self.settings.stream("events")
            await put_stream_records(
                await self.aws.put_records(stream),
                stream=stream,
                entries=stream_entries,
                max_attempts=self.settings.kinesis_max_attempts,
                concurrency=self.settings.kinesis_put_concurrency,
            )
        await self.markers.note_shipped(result.days)
        SHIPPED.inc(result.events)
        log.info("segment_shipped", segment=segment.name, events=result.events, bad=result.bad, objects=len(puts))
        return result
