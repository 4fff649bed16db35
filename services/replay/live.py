"""Read the tail of the live Kinesis events stream with shard iterators."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from shared.kinesis import list_shard_ids, read_shard

LIVE_SCHEMA = pa.schema(
    [
        ("line", pa.string()),
        ("sequence_number", pa.string()),
        ("shard_id", pa.string()),
        ("arrived_at", pa.timestamp("ms")),
    ]
)


def _row(record: dict[str, Any], shard_id: str) -> dict[str, Any]:
    return {
        "line": record["Data"].decode("utf-8", errors="replace"),
        "sequence_number": record["SequenceNumber"],
        "shard_id": shard_id,
        "arrived_at": record.get("ApproximateArrivalTimestamp"),
    }


async def read_live_tail(kinesis: Any, stream: str, max_records: int) -> pa.Table:
    """Return every record currently retained in ``stream`` (at most ``max_records``) as an Arrow table."""
    shards = await list_shard_ids(kinesis, stream)
    per_shard = max(1, max_records // max(1, len(shards)))
    batches = await asyncio.gather(*(read_shard(kinesis, stream, shard, per_shard) for shard in shards))
    rows = [_row(record, shard) for shard, batch in zip(shards, batches, strict=True) for record in batch]
    return pa.Table.from_pylist(rows, schema=LIVE_SCHEMA)
