"""Shard leases in Redis: replicas heartbeat, compute the same even split, and hold leases with a TTL.

Every replica sorts the live replicas (heartbeat younger than the lease TTL) and takes shard ``s``
when it is ``live[s % len(live)]``. It releases shards that are no longer its own before anyone
else can take them (a lease is only acquired once free), and a shard it acquires is polled only
from the next tick on: the previous owner may have polled part of the current tick, so no device
is polled twice in one tick. A replica that cannot renew stops polling a shard when its lease may
have expired, whatever Redis says later.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from services.poller.keys import Keys
from shared.logging import get_logger

log = get_logger(__name__)

_RENEW = """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if cjson.decode(value)['owner'] ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

_RELEASE = """
local value = redis.call('GET', KEYS[1])
if value and cjson.decode(value)['owner'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class Lease:
    """A shard this replica holds."""

    start_tick: int
    expires_mono: float


class ShardLeases:
    """This replica's view of shard ownership, kept current by ``beat()``."""

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        replica_id: str,
        shard_count: int,
        lease_ttl_s: float,
        interval_s: float,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.replica_id = replica_id
        self.shard_count = shard_count
        self.ttl = lease_ttl_s
        self.interval = interval_s
        self.owned: dict[int, Lease] = {}
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def owns(self, shard: int, tick: int, now_mono: float) -> bool:
        """Return whether this replica may poll ``shard``'s devices in ``tick``."""
        lease = self.owned.get(shard)
        return lease is not None and tick >= lease.start_tick and now_mono < lease.expires_mono

    def target(self, live: list[str]) -> set[int]:
        """Return the shards this replica should own given the live replicas."""
        if self.replica_id not in live:
            live = sorted([*live, self.replica_id])
        index = live.index(self.replica_id)
        return {shard for shard in range(self.shard_count) if shard % len(live) == index}

    async def live_replicas(self, now: float) -> list[str]:
        """Return the replicas whose heartbeat is younger than the lease TTL, sorted."""
        raw = await self.redis.zrangebyscore(self.keys.replicas, now - self.ttl, "+inf")
        return sorted(r.decode() for r in raw)

    async def beat(self) -> None:
        """Heartbeat, release shards that moved away, renew the rest and acquire the free ones of ours."""
        now = time.time()
        sent_mono = time.monotonic()
        expires = sent_mono + self.ttl * 0.9
        await self.redis.zadd(self.keys.replicas, {self.replica_id: now})
        await self.redis.zremrangebyscore(self.keys.replicas, "-inf", now - 10 * self.ttl)
        target = self.target(await self.live_replicas(now))
        ttl_ms = int(self.ttl * 1000)
        value = orjson.dumps({"owner": self.replica_id, "renewed_at": now})
        for shard in sorted(set(self.owned) - target):
            self.owned.pop(shard)  # stop polling first, then free the lease
            await self._release(keys=[self.keys.lease(shard)], args=[self.replica_id])
            log.info("shard_released", shard=shard, replica=self.replica_id)
        pipe = self.redis.pipeline(transaction=False)
        kept = sorted(set(self.owned) & target)
        for shard in kept:
            await self._renew(keys=[self.keys.lease(shard)], args=[self.replica_id, value, ttl_ms], client=pipe)
        wanted = sorted(target - set(self.owned))
        for shard in wanted:
            pipe.set(self.keys.lease(shard), value, nx=True, px=ttl_ms)
        results = await pipe.execute()
        for shard, ok in zip(kept, results[: len(kept)], strict=True):
            if ok:
                self.owned[shard].expires_mono = expires
            else:
                self.owned.pop(shard, None)
                log.warning("shard_lease_lost", shard=shard, replica=self.replica_id)
        next_tick = int(now // self.interval) + 1
        for shard, ok in zip(wanted, results[len(kept) :], strict=True):
            if ok:
                self.owned[shard] = Lease(start_tick=next_tick, expires_mono=expires)
                log.info("shard_acquired", shard=shard, replica=self.replica_id, start_tick=next_tick)

    async def run(self, stop: asyncio.Event, heartbeat_s: float) -> None:
        """Beat every ``heartbeat_s`` until ``stop`` is set; Redis errors are logged and retried."""
        while not stop.is_set():
            try:
                await self.beat()
            except Exception as exc:  # keep beating through Redis hiccups; leases lapse on their own
                log.warning("shard_heartbeat_failed", error=type(exc).__name__, replica=self.replica_id)
            try:
                await asyncio.wait_for(stop.wait(), timeout=heartbeat_s)
            except TimeoutError:
                pass

    async def release_all(self) -> None:
        """Give every lease back and leave the replica set (graceful shutdown)."""
        shards = sorted(self.owned)
        self.owned.clear()
        for shard in shards:
            await self._release(keys=[self.keys.lease(shard)], args=[self.replica_id])
        await self.redis.zrem(self.keys.replicas, self.replica_id)
