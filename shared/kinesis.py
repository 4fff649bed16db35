"""Read Kinesis streams from the start with shard iterators (the live tail, tests, the demo)."""

from __future__ import annotations

import asyncio
from typing import Any


async def list_shard_ids(kinesis: Any, stream: str) -> list[str]:
    """Return the ids of every shard of ``stream`` (following pagination)."""
    shards: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = await kinesis.list_shards(**kwargs)
        shards.extend(shard["ShardId"] for shard in page["Shards"])
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


async def read_shard(kinesis: Any, stream: str, shard_id: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Return the raw records of one shard from its oldest retained record up to the tip (at most ``limit``)."""
    iterator = (
        await kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
    )["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator and (limit is None or len(records) < limit):
        want = 10_000 if limit is None else min(10_000, limit - len(records))
        page = await kinesis.get_records(ShardIterator=iterator, Limit=want)
        records.extend(page["Records"])
        # An empty page at the tip means everything currently in the shard has been read.
        if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
            break
        iterator = page.get("NextShardIterator")
    return records


async def read_stream(kinesis: Any, stream: str, limit_per_shard: int | None = None) -> list[dict[str, Any]]:
    """Return the raw records of every shard of ``stream``, shard by shard."""
    shards = await list_shard_ids(kinesis, stream)
    pages = await asyncio.gather(*(read_shard(kinesis, stream, shard, limit_per_shard) for shard in shards))
    return [record for page in pages for record in page]
