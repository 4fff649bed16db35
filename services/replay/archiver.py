"""The archiver: copy every shard of every registered stream (``POST /v1/archives``) into the raw archive.

Run with ``python -m services.replay.archiver`` (one or more replicas; each shard is leased in Redis to one).

Exactly once, per shard, across crashes. A shard's state in Redis is its checkpoint (the last archived sequence
number) and, while a batch is being written, its *intent* (the batch's last sequence number). A batch is:

1. read records after the checkpoint (GetRecords);
2. record the intent = the batch's last sequence number;
3. write the batch's archive objects, one per (dt, hour) of arrival, named after the shard and the first sequence
   number of the object's records, with their count (contract 1: ``<source>/dt=/hour=/<name>-n<count>.json.gz``);
4. move the checkpoint to the intent and clear it, in one Redis script that also checks the lease is still held.

After a crash (kill -9 anywhere) the next owner resumes from the checkpoint; with an intent pending it re-reads
exactly the records up to the intent, so it writes the same keys with the same contents (an overwrite, not a
duplicate). At most one batch is read twice; none is archived twice.

Day markers: ``<source>/dt=D/_COMPLETE`` is written once every open shard has archived past the end of D (plus
``archive_marker_grace_s``), judged by arrival time: a shard's watermark is the arrival of its last archived
record, or the time it was last read to its tip.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import secrets
import signal
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field
from redis.asyncio import Redis

from services.replay.archives import (
    arrival_of,
    registered,
    shard_number,
    state_key,
    stream_tag,
    to_raw_line,
)
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.contracts import day_marker_key, raw_day_prefix, raw_object_key
from shared.kinesis import list_shard_ids
from shared.logging import configure_logging, get_logger
from shared.redis import open_redis

log = get_logger(__name__)

_LEASED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_INTENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2] .. ':intent', ARGV[3])
return 1
"""
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[3] .. ':checkpoint', ARGV[4], ARGV[3] .. ':watermark', ARGV[6])
redis.call('HDEL', KEYS[2], ARGV[3] .. ':intent')
redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':archived', ARGV[5])
for i = 7, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class ArchiverSettings(ReplaySettings):
    """Replay's settings plus the archiver's own (env prefix ``HEADWATER_``)."""

    service_name: str = "replay-archiver"
    # Records per GetRecords call (Kinesis allows 10,000), and the pause when every shard is at its tip.
    archive_batch_records: int = Field(default=1000, ge=1, le=10_000)
    archive_poll_s: float = Field(default=1.0, gt=0)
    # A shard's lease: another replica takes the shard over this long after its owner stopped renewing it.
    archive_lease_ttl_s: float = Field(default=15.0, gt=0)
    # A day's marker waits until every shard has archived this far past the day's end (by arrival time).
    archive_marker_grace_s: float = Field(default=300.0, ge=0)


class LeaseLost(Exception):
    """Another archiver owns the shard now."""


def _seq(record: dict[str, Any]) -> int:
    return int(record["SequenceNumber"])


def _day_end(dt: str) -> datetime:
    return datetime.combine(date.fromisoformat(dt), datetime.min.time(), tzinfo=UTC) + timedelta(days=1)


class ShardArchiver:
    """Archive one shard of one stream, batch by batch, while holding its lease."""

    def __init__(
        self, *, settings: ArchiverSettings, redis: Redis, kinesis: Any, s3: Any, stream: str, source: str, shard: str
    ) -> None:
        self.settings, self.redis, self.kinesis, self.s3 = settings, redis, kinesis, s3
        self.stream, self.source, self.shard = stream, source, shard
        prefix = settings.resource_prefix
        self.state = state_key(prefix, stream)
        self.days = f"{self.state}:days"
        self.lease = f"{prefix}:replay:archive-lease:{stream}:{shard}"
        self.owner = secrets.token_hex(8)
        self._iterator: str | None = None
        self._ttl_ms = str(int(settings.archive_lease_ttl_s * 1000))
        self._leased = redis.register_script(_LEASED)
        self._commit = redis.register_script(_COMMIT)
        self._intent = redis.register_script(_INTENT)

    async def acquire(self) -> bool:
        """Take the shard's lease if nobody holds it."""
        return bool(await self.redis.set(self.lease, self.owner, nx=True, px=int(self._ttl_ms)))

    async def release(self) -> None:
        """Let another archiver take the shard at once (clean stop)."""
        if await self._leased(keys=[self.lease], args=[self.owner, "1"]):
            await self.redis.delete(self.lease)

    def reset(self) -> None:
        """Forget the shard iterator: the next step starts again from the checkpoint."""
        self._iterator = None

    async def _field(self, name: str) -> str | None:
        value = await self.redis.hget(self.state, f"{self.shard}:{name}")
        return value.decode() if value is not None else None

    async def _new_iterator(self, checkpoint: str | None) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard}
        if checkpoint is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
        return (await self.kinesis.get_shard_iterator(**kwargs))["ShardIterator"]

    async def step(self) -> int:
        """Archive the next batch of the shard; return how many records it held (0 at the tip or when closed)."""
        if not await self._leased(keys=[self.lease], args=[self.owner, self._ttl_ms]):
            raise LeaseLost(self.shard)
        checkpoint, intent = await self._field("checkpoint"), await self._field("intent")
        if intent is not None:
            # A batch was being written when its archiver stopped: re-read exactly that batch.
            records = await self._read_through(checkpoint, int(intent))
            self._iterator = None
            if not records:  # the whole batch left the stream's retention meanwhile
                await self.redis.hdel(self.state, f"{self.shard}:intent")
                return 0
        else:
            records = await self._read_next(checkpoint)
            if not records:
                return 0
            last = records[-1]["SequenceNumber"]
            if not await self._intent(keys=[self.lease, self.state], args=[self.owner, self.shard, last]):
                raise LeaseLost(self.shard)
        await self._write(records)
        return len(records)

    async def _read_next(self, checkpoint: str | None) -> list[dict[str, Any]]:
        if self._iterator is None:
            self._iterator = await self._new_iterator(checkpoint)
        page = await self.kinesis.get_records(ShardIterator=self._iterator, Limit=self.settings.archive_batch_records)
        self._iterator = page.get("NextShardIterator")
        records = page["Records"]
        if not records:
            field = "closed" if self._iterator is None else "watermark"
            if field == "closed" or page.get("MillisBehindLatest", 0) == 0:
                # At the tip: everything that arrived until now is archived.
                value = "1" if field == "closed" else str(int(time.time() * 1000))
                await self.redis.hset(self.state, f"{self.shard}:{field}", value)
        return records

    async def _read_through(self, checkpoint: str | None, last: int) -> list[dict[str, Any]]:
        iterator: str | None = await self._new_iterator(checkpoint)
        records: list[dict[str, Any]] = []
        while iterator and not (records and _seq(records[-1]) >= last):
            page = await self.kinesis.get_records(ShardIterator=iterator, Limit=self.settings.archive_batch_records)
            records += [r for r in page["Records"] if _seq(r) <= last]
            iterator = page.get("NextShardIterator")
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break  # the rest of the batch left the stream's retention: archive what is still there
        return records

    async def _write(self, records: list[dict[str, Any]]) -> None:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            arrived = arrival_of(record)
            groups[(arrived.strftime("%Y-%m-%d"), arrived.strftime("%H"))].append(record)
        bucket = self.settings.bucket("raw")
        tag = f"kinesis-{stream_tag(self.stream)}-{shard_number(self.shard)}"
        for (dt, hour), group in sorted(groups.items()):
            key = raw_object_key(self.source, dt, hour, f"{tag}-{group[0]['SequenceNumber']}", len(group))
            lines = [to_raw_line(r, stream=self.stream, shard_id=self.shard, source=self.source) for r in group]
            body = await asyncio.to_thread(gzip.compress, b"\n".join(lines) + b"\n", 6, mtime=0)
            await self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        watermark = str(int(arrival_of(records[-1]).timestamp() * 1000))
        days = sorted({dt for dt, _ in groups})
        committed = await self._commit(
            keys=[self.lease, self.state, self.days],
            args=[self.owner, self._ttl_ms, self.shard, records[-1]["SequenceNumber"], len(records), watermark, *days],
        )
        if not committed:
            raise LeaseLost(self.shard)


async def write_due_markers(
    *, settings: ArchiverSettings, redis: Redis, s3: Any, stream: str, source: str, shards: list[str]
) -> list[str]:
    """Write the markers of the stream's days that every open shard has archived past; return their keys."""
    state_hash = state_key(settings.resource_prefix, stream)
    state = {k.decode(): v.decode() for k, v in (await redis.hgetall(state_hash)).items()}
    open_marks = [int(state.get(f"{s}:watermark", 0)) for s in shards if state.get(f"{s}:closed") != "1"]
    watermark = datetime.fromtimestamp(min(open_marks, default=2**41) / 1000, UTC)
    grace = timedelta(seconds=settings.archive_marker_grace_s)
    written = []
    for raw_dt in sorted(await redis.smembers(f"{state_hash}:days")):
        dt = raw_dt.decode()
        if watermark < _day_end(dt) + grace:
            continue
        objects = events = 0
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(
            Bucket=settings.bucket("raw"), Prefix=f"{raw_day_prefix(source, dt)}hour="
        ):
            for item in page.get("Contents", []):
                objects += 1
                events += int(item["Key"].rsplit("-n", 1)[-1].split(".", 1)[0] or 0)
        body = {"source": source, "dt": dt, "events": events, "objects": objects, "stream": stream}
        key = day_marker_key(source, dt)
        await s3.put_object(Bucket=settings.bucket("raw"), Key=key, Body=json.dumps(body).encode())
        await redis.srem(f"{state_hash}:days", dt)
        log.info("archive_day_marked", stream=stream, source=source, dt=dt, events=events)
        written.append(key)
    return written


class Archiver:
    """Lease shards of the registered streams and archive them until stopped."""

    def __init__(self, *, settings: ArchiverSettings, redis: Redis, aws: AwsClients) -> None:
        self.settings, self.redis, self.aws = settings, redis, aws
        self.owned: dict[tuple[str, str], ShardArchiver] = {}

    async def _claim(self) -> dict[str, tuple[str, list[str]]]:
        kinesis, s3 = await self.aws.get("kinesis"), await self.aws.get("s3")
        found: dict[str, tuple[str, list[str]]] = {}
        for stream, source in (await registered(self.redis, self.settings.resource_prefix)).items():
            shards = await list_shard_ids(kinesis, stream)
            found[stream] = (source, shards)
            for shard in shards:
                if (stream, shard) in self.owned:
                    continue
                worker = ShardArchiver(
                    settings=self.settings,
                    redis=self.redis,
                    kinesis=kinesis,
                    s3=s3,
                    stream=stream,
                    source=source,
                    shard=shard,
                )
                if await worker.acquire():
                    self.owned[(stream, shard)] = worker
                    log.info("archive_shard_leased", stream=stream, shard=shard)
        return found

    async def _step(self, key: tuple[str, str], worker: ShardArchiver) -> int:
        try:
            return await worker.step()
        except LeaseLost:
            log.warning("archive_lease_lost", stream=key[0], shard=key[1])
            self.owned.pop(key, None)
        except Exception as exc:
            # Expired iterators, throttling, a dependency down: start again from the checkpoint next round.
            log.warning("archive_step_failed", stream=key[0], shard=key[1], error=f"{type(exc).__name__}: {exc}"[:300])
            worker.reset()
        return 0

    async def run_once(self) -> int:
        """Claim free shards, archive one batch of each owned shard, write due markers; return records archived."""
        streams = await self._claim()
        counts = await asyncio.gather(*(self._step(k, w) for k, w in list(self.owned.items())))
        s3 = await self.aws.get("s3")
        for stream, (source, shards) in streams.items():
            await write_due_markers(
                settings=self.settings, redis=self.redis, s3=s3, stream=stream, source=source, shards=shards
            )
        return sum(counts)

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set; pause ``archive_poll_s`` whenever every shard is at its tip."""
        while not stop.is_set():
            try:
                archived = await self.run_once()
            except Exception as exc:
                log.warning("archive_round_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                archived = 0
            if not archived:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.settings.archive_poll_s)
        for worker in self.owned.values():
            await worker.release()


async def main() -> None:
    """Run the archiver process until SIGTERM or SIGINT."""
    settings = ArchiverSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = open_redis(settings)
    async with AwsClients(settings) as aws:
        try:
            await Archiver(settings=settings, redis=redis, aws=aws).run(stop)
        finally:
            await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
