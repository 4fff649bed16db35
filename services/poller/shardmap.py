"""Read the shard map (leases, replicas, devices per shard) for the API and the page."""

from __future__ import annotations

import time
from collections import Counter

import orjson

from services.poller.keys import shard_of
from services.poller.models import ReplicaInfo, ShardInfo, ShardMap
from services.poller.registry import Registry


async def shard_map(*, registry: Registry, lease_ttl_s: float) -> ShardMap:
    """Return who holds each shard's lease, how old it is, and how many devices each shard has."""
    keys, redis, count = registry.keys, registry.redis, registry.shard_count
    per_shard = Counter(shard_of(cloud_id, count) for cloud_id in await registry.all_ids())
    pipe = redis.pipeline(transaction=False)
    for shard in range(count):
        pipe.get(keys.lease(shard))
        pipe.pttl(keys.lease(shard))
    raw = await pipe.execute()
    now = time.time()
    shards: list[ShardInfo] = []
    for shard in range(count):
        value, pttl = raw[2 * shard], raw[2 * shard + 1]
        lease = orjson.loads(value) if value else None
        shards.append(
            ShardInfo(
                shard=shard,
                owner=lease["owner"] if lease else None,
                lease_age_s=round(now - lease["renewed_at"], 3) if lease else None,
                lease_expires_in_s=round(pttl / 1000, 3) if lease and pttl > 0 else None,
                devices=per_shard.get(shard, 0),
            )
        )
    beats = await redis.zrangebyscore(keys.replicas, now - lease_ttl_s, "+inf", withscores=True)
    replicas = []
    for member, score in beats:
        replica_id = member.decode()
        owned = [s.shard for s in shards if s.owner == replica_id]
        replicas.append(
            ReplicaInfo(
                replica_id=replica_id,
                heartbeat_age_s=round(now - score, 3),
                shards=owned,
                devices=sum(per_shard.get(s, 0) for s in owned),
            )
        )
    return ShardMap(shard_count=count, replicas=sorted(replicas, key=lambda r: r.replica_id), shards=shards)
