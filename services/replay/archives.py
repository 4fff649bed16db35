"""Archives of Kinesis streams Headwater does not write: which streams, their per-shard state, their records.

An archive is registered in Redis (``POST /v1/archives``); the archiver process (``services.replay.archiver``)
reads every shard of every registered stream and writes the raw archive (contract 1) under the archive's source.

A foreign record becomes a raw record: its event id is ``<stream>:<shard number>:<sequence number>`` (stable, so
``all_events`` de-duplicates the live tail against the archive), its ``event_time`` and ``received_at`` are the
record's arrival time at Kinesis (the only time every record has; partitions follow it), its data is kept under
``properties`` (the JSON object as sent, else ``{"data": text}`` or ``{"data_base64": ...}``) and its origin under
``kinesis`` (stream, shard, sequence number, partition key).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from redis.asyncio import Redis

from services.replay.archive_models import ArchiveCreate, ArchiveRead, ArchiveShardRead
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.kinesis import list_shard_ids, read_shard
from shared.messages import utc_now
from shared.settings import STREAMS, HeadwaterSettings


def registry_key(prefix: str) -> str:
    """Return the Redis hash of registered archives (stream -> spec JSON)."""
    return f"{prefix}:replay:archives"


def state_key(prefix: str, stream: str) -> str:
    """Return the Redis hash of one archive's per-shard state (``<shard>:checkpoint`` and friends)."""
    return f"{prefix}:replay:archive:{stream}"


def shard_number(shard_id: str) -> str:
    """Return the short form of a shard id (``shardId-000000000007`` -> ``7``)."""
    tail = shard_id.rsplit("-", 1)[-1]
    return str(int(tail)) if tail.isdigit() else tail


def stream_tag(stream: str) -> str:
    """Return a short stable tag of a stream name (object names of different streams never collide)."""
    return hashlib.sha256(stream.encode()).hexdigest()[:8]


def _iso_ms(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def arrival_of(record: dict[str, Any]) -> datetime:
    """Return a Kinesis record's arrival time (UTC)."""
    arrived = record["ApproximateArrivalTimestamp"]
    if isinstance(arrived, int | float):
        return datetime.fromtimestamp(arrived, UTC)
    return arrived if arrived.tzinfo else arrived.replace(tzinfo=UTC)


def to_raw_line(record: dict[str, Any], *, stream: str, shard_id: str, source: str) -> bytes:
    """Return a foreign Kinesis record as one raw-record JSON line (see the module docstring)."""
    data: bytes = record["Data"]
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        properties: dict[str, Any] = payload
    else:
        try:
            properties = {"data": data.decode("utf-8")}
        except UnicodeDecodeError:
            properties = {"data_base64": base64.b64encode(data).decode("ascii")}
    sequence = record["SequenceNumber"]
    at = _iso_ms(arrival_of(record))
    return orjson.dumps(
        {
            "event_id": f"{stream}:{shard_number(shard_id)}:{sequence}"[-128:],
            "type": source,
            "source": source,
            "event_time": at,
            "received_at": at,
            "client_ip_hash": None,
            "ad_id": None,
            "campaign_id": None,
            "placement": None,
            "user_id": None,
            "properties": properties,
            "kinesis": {
                "stream": stream,
                "shard_id": shard_id,
                "sequence_number": sequence,
                "partition_key": record.get("PartitionKey"),
            },
        }
    )


async def registered(redis: Redis, prefix: str) -> dict[str, str]:
    """Return {stream: source} of every registered archive."""
    specs = await redis.hgetall(registry_key(prefix))
    return {stream.decode(): orjson.loads(spec)["source"] for stream, spec in specs.items()}


async def create_archive(
    *, settings: HeadwaterSettings, redis: Redis, kinesis: Any, request: ArchiveCreate
) -> ArchiveRead:
    """Register ``request.stream`` for archiving under ``request.source`` (idempotent for the same source)."""
    if request.stream in {settings.stream(name) for name in STREAMS}:
        raise UnprocessableError(
            "Headwater writes this stream itself: its records are archived already",
            details=[{"field": "stream", "reason": "headwater_stream"}],
        )
    try:
        await list_shard_ids(kinesis, request.stream)
    except kinesis.exceptions.ResourceNotFoundException:
        raise NotFoundError(f"no Kinesis stream named {request.stream!r}") from None
    spec = orjson.dumps({"source": request.source, "created_at": _iso_ms(utc_now())})
    if not await redis.hsetnx(registry_key(settings.resource_prefix), request.stream, spec):
        existing = (await registered(redis, settings.resource_prefix))[request.stream]
        if existing != request.source:
            raise ConflictError(f"stream {request.stream!r} is already archived as source {existing!r}")
    return await read_archive(settings=settings, redis=redis, stream=request.stream)


async def read_archive(*, settings: HeadwaterSettings, redis: Redis, stream: str) -> ArchiveRead:
    """Return one registered archive with its shards' progress."""
    prefix = settings.resource_prefix
    raw = await redis.hget(registry_key(prefix), stream)
    if raw is None:
        raise NotFoundError(f"stream {stream!r} is not archived")
    spec = orjson.loads(raw)
    state = {k.decode(): v.decode() for k, v in (await redis.hgetall(state_key(prefix, stream))).items()}
    shard_ids = sorted({field.split(":", 1)[0] for field in state})
    shards = [
        ArchiveShardRead(
            shard_id=shard,
            checkpoint=state.get(f"{shard}:checkpoint"),
            archived=int(state.get(f"{shard}:archived", 0)),
            closed=state.get(f"{shard}:closed") == "1",
        )
        for shard in shard_ids
    ]
    return ArchiveRead(
        stream=stream,
        source=spec["source"],
        created_at=spec["created_at"],
        archived=sum(s.archived for s in shards),
        shards=shards,
    )


async def list_archives(*, settings: HeadwaterSettings, redis: Redis) -> list[ArchiveRead]:
    """Return every registered archive with its progress."""
    streams = sorted(await registered(redis, settings.resource_prefix))
    return [await read_archive(settings=settings, redis=redis, stream=stream) for stream in streams]


async def with_archived_tails(live: pa.Table, *, kinesis: Any, redis: Redis, settings: HeadwaterSettings) -> pa.Table:
    """Return ``live`` with the retained records of every archived stream appended, converted to raw records."""
    streams = await registered(redis, settings.resource_prefix)
    if not streams:
        return live
    budget = max(1, getattr(settings, "live_max_records", 200_000))
    rows: list[dict[str, Any]] = []
    for stream, source in sorted(streams.items()):
        shards = await list_shard_ids(kinesis, stream)
        per_shard = max(1, budget // max(1, len(shards) * len(streams)))
        for shard in shards:
            for record in await read_shard(kinesis, stream, shard, per_shard):
                line = to_raw_line(record, stream=stream, shard_id=shard, source=source).decode()
                rows.append(
                    {
                        "line": line,
                        "sequence_number": record["SequenceNumber"],
                        "shard_id": shard,
                        "arrived_at": arrival_of(record),
                    }
                )
    extra = pa.Table.from_pylist(rows, schema=live.schema)
    return pa.concat_tables([live, extra])
