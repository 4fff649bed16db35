"""Read the tail of the live Kinesis events stream with shard iterators."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

LIVE_SCHEMA = pa.schema(
    [
        ("line", pa.string()),
        ("sequence_number", pa.string()),
        ("shard_id", pa.string()),
        ("arrived_at", pa.timestamp("ms")),
    ]
)


async def _read_shard(kinesis: Any, stream: str, shard_id: str, limit: int) -> list[dict[str, Any]]:
    iterator = (
        await kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    )["ShardIterator"]
    rows: list[dict[str, Any]] = []
    while iterator and len(rows) < limit:
        page = await kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, limit - len(rows)))
        for record in page["Records"]:
            rows.append(
                {
                    "line": record["Data"].decode("utf-8", errors="replace"),
                    "sequence_number": record["SequenceNumber"],
                    "shard_id": shard_id,
                    "arrived_at": record.get("ApproximateArrivalTimestamp"),
                }
            )
        # An empty page at the tip means everything currently in the shard has been read.
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
        iterator = page.get("NextShardIterator")
    return rows


async def read_live_tail(kinesis: Any, stream: str, max_records: int) -> pa.Table:
    """Return every record currently retained in ``stream`` (at most ``max_records``) as an Arrow table."""
    shards: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = await kinesis.list_shards(**kwargs)
        shards.extend(s["ShardId"] for s in page["Shards"])
        token = page.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    per_shard = max(1, max_records // max(1, len(shards)))
    batches = await asyncio.gather(*(_read_shard(kinesis, stream, shard, per_shard) for shard in shards))
    rows = [row for batch in batches for row in batch]
    return pa.Table.from_pylist(rows, schema=LIVE_SCHEMA)
