"""The ``archive: firehose`` path: put records to the raw-archive delivery stream, then settle what it lands.

Putting: PutRecordBatch in calls of at most 500 records and 4 MiB, retrying only the records a call reports as
failed (and a whole call only when ``shared.retry.is_transient`` says so) through ``shared.kinesis_put``'s
``put_with_retry``; each record is one JSON line ending in a newline, since Firehose concatenates records as given.

Settling: Firehose lands objects under ``_firehose/`` by arrival time (see ``shared.bootstrap_firehose``). Each one
is read, its lines grouped by (source, event day, event hour) and written as contract-1 archive objects named after
the landed key, then the landed object is deleted. Re-settling the same object after a crash rewrites the same keys
(nothing duplicated); two ingest processes settling at once write identical objects. Settled days are noted for the
day markers; days put to Firehose but not yet settled are held back from their markers meanwhile.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
from botocore.exceptions import ClientError

from services.ingest.badrows import write_bad_rows
from services.ingest.markers import DayMarkers
from services.ingest.settings import IngestSettings
from services.ingest.sinks import SinkError, put_archive_object
from services.ingest.spool import Day
from shared.contracts import raw_object_key
from shared.firehose_layout import BUFFER_INTERVAL_S, FIREHOSE_LANDING_PREFIX, delivery_stream_name
from shared.kinesis_put import PutRecords, PutRecordsError, exponential_backoff, put_with_retry
from shared.logging import get_logger

log = get_logger(__name__)

FIREHOSE_MAX_RECORDS = 500
FIREHOSE_MAX_BYTES = 4 * 1024 * 1024


def firehose_put(firehose: Any, delivery_stream: str) -> PutRecords:
    """Return a PutRecordBatch call in ``shared.kinesis_put``'s shape (the entries' partition keys are unused)."""

    async def put(entries: list[tuple[bytes, str]]) -> dict[int, str]:
        try:
            response = await firehose.put_record_batch(
                DeliveryStreamName=delivery_stream, Records=[{"Data": data} for data, _ in entries]
            )
        except ClientError as exc:
            raise PutRecordsError.from_client_error(exc) from exc
        if not response.get("FailedPutCount"):
            return {}
        answers = response.get("RequestResponses", ())
        return {index: str(answer["ErrorCode"]) for index, answer in enumerate(answers) if answer.get("ErrorCode")}

    return put


def firehose_chunks(lines: list[bytes]) -> Iterator[list[tuple[bytes, str]]]:
    """Split newline-terminated records into PutRecordBatch calls of at most 500 records and 4 MiB."""
    chunk: list[tuple[bytes, str]] = []
    size = 0
    for line in lines:
        if chunk and (len(chunk) >= FIREHOSE_MAX_RECORDS or size + len(line) > FIREHOSE_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((line, ""))
        size += len(line)
    if chunk:
        yield chunk


async def put_firehose_records(put: PutRecords, *, delivery_stream: str, lines: list[bytes], max_attempts: int) -> int:
    """Put every line (one record each, newline added) in order; return the calls made, raise SinkError on loss."""
    records = [line if line.endswith(b"\n") else line + b"\n" for line in lines]
    calls = 0
    for chunk in firehose_chunks(records):
        try:
            result = await put_with_retry(
                put, chunk, stream=delivery_stream, max_attempts=max_attempts, backoff=exponential_backoff(0.2)
            )
        except PutRecordsError as exc:
            raise SinkError(f"PutRecordBatch failed {exc.attempts} times: {exc}") from exc
        if result.given_up:
            raise SinkError(f"{len(result.given_up)} records still failing after {max_attempts} PutRecordBatch calls")
        calls += result.calls
    return calls


def settled_name(landed_key: str) -> str:
    """Return the archive object name of a landed object: derived from its key, so a re-settle overwrites."""
    return "fh-" + hashlib.sha256(landed_key.encode()).hexdigest()[:24]


def group_landed(body: bytes) -> tuple[dict[tuple[str, str, str], list[bytes]], list[bytes]]:
    """Return a landed object's lines grouped by (source, dt, hour) of their event time, and the unreadable ones."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    groups: dict[tuple[str, str, str], list[bytes]] = defaultdict(list)
    unreadable: list[bytes] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            source, event_time = record["source"], record["event_time"]
            groups[(source, event_time[:10], event_time[11:13])].append(line)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            unreadable.append(line)  # not written by ingest's shipper, which validates every record
    return groups, unreadable


class FirehoseArchive:
    """Put records of firehose-archived sources, settle landed objects, and hold their days from the markers."""

    def __init__(self, *, settings: IngestSettings, markers: DayMarkers, name: str) -> None:
        self.settings = settings
        self.markers = markers
        self.delivery_stream = delivery_stream_name(settings)
        self._name = name
        self._in_flight: dict[Day, float] = {}
        self._next_settle = 0.0

    def archives(self, source: str) -> bool:
        """Return whether ``source`` is archived through Firehose."""
        return self.settings.archive_paths.get(source, "direct") == "firehose"

    @property
    def enabled(self) -> bool:
        """Return whether any source goes through Firehose."""
        return "firehose" in self.settings.archive_paths.values()

    async def put(self, firehose: Any, lines: list[bytes], days: set[Day]) -> None:
        """Put ``lines`` to the delivery stream; hold ``days`` from their markers until landed and settled."""
        await put_firehose_records(
            firehose_put(firehose, self.delivery_stream),
            delivery_stream=self.delivery_stream,
            lines=lines,
            max_attempts=self.settings.kinesis_max_attempts,
        )
        # Firehose delivers within its buffer interval; a settle pass later the objects are in the raw layout.
        until = time.time() + BUFFER_INTERVAL_S + 2 * self.settings.firehose_settle_interval_s + 30
        self._in_flight.update(dict.fromkeys(days, until))
        await self._publish_held()

    async def _publish_held(self) -> None:
        now = time.time()
        self._in_flight = {day: until for day, until in self._in_flight.items() if until > now}
        ttl = max(self._in_flight.values(), default=now + 1) - now
        await self.markers.hold(set(self._in_flight), name=f"firehose-{self._name}", ttl_s=ttl)

    async def settle_due(self, s3: Any) -> int:
        """Settle landed objects when the settle interval has passed; return how many were settled."""
        if not self.enabled or time.monotonic() < self._next_settle:
            return 0
        self._next_settle = time.monotonic() + self.settings.firehose_settle_interval_s
        settled = await self.settle(s3)
        await self._publish_held()
        return settled

    async def settle(self, s3: Any) -> int:
        """Move every object under the landing prefix into the raw layout; return how many were settled."""
        bucket = self.settings.bucket("raw")
        landed: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=FIREHOSE_LANDING_PREFIX):
            landed.extend(item["Key"] for item in page.get("Contents", []))
        for key in landed:
            await self._settle_one(s3, bucket, key)
        return len(landed)

    async def _settle_one(self, s3: Any, bucket: str, key: str) -> None:
        try:
            response = await s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.NoSuchKey:
            return  # another process settled it meanwhile
        async with response["Body"] as stream:
            body = await stream.read()
        groups, unreadable = await asyncio.to_thread(group_landed, body)
        name = settled_name(key)
        await asyncio.gather(
            *(
                put_archive_object(
                    s3, bucket=bucket, key=raw_object_key(source, dt, hour, name, len(lines)), lines=lines
                )
                for (source, dt, hour), lines in groups.items()
            )
        )
        await self.markers.note_shipped({(source, dt) for source, dt, _ in groups})
        if unreadable:
            await write_bad_rows(
                s3,
                bucket=self.settings.bucket("bad-rows"),
                dt=time.strftime("%Y-%m-%d", time.gmtime()),
                segment_name=name,
                rows=[
                    {"reason": "not a raw record", "segment": key, "original": line.decode("utf-8", "replace")}
                    for line in unreadable
                ],
            )
        await s3.delete_object(Bucket=bucket, Key=key)
        log.info("firehose_object_settled", key=key, events=sum(map(len, groups.values())), objects=len(groups))
