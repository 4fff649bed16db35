"""Dedup of client-supplied event ids, in two steps so that a crash never turns a retry into a loss.

``claim`` marks an id *pending* (short TTL) before the spool write; ``confirm`` marks it *seen* for the dedup
window once the event is durable. A retry that finds the id seen is a duplicate; one that finds it pending is
told to retry later (the first request is still in flight, or its process died before the write and the
pending mark expires within ``PENDING_TTL_S``), so a never-acknowledged event is never answered "duplicate".

A batch's ids are claimed with one Lua script call, and confirmed with another: one command per batch instead
of two per id costs the ingest process about a tenth of the CPU (redis-py spends ~25 us per event building and
parsing the pipelined commands of a 500-event batch, ~3 us with the scripts). The scripts build the keys from
the prefix and the ids they are given, so they suit a single Redis (Headwater's), not Redis Cluster.
"""

from __future__ import annotations

from typing import Any, Literal

from redis.asyncio import Redis

PENDING_TTL_S = 10
Claim = Literal["new", "duplicate", "pending"]
_CLAIMS: tuple[Claim, ...] = ("new", "duplicate", "pending")

# The ids travel as one newline-joined argument (ARGV[3]) under the key prefix (ARGV[1]): redis-py builds every
# argument in Python, which for 100-500 keys cost more than the scripts' work. Event ids never hold a newline
# (they match records.EVENT_ID or are hex digests); a batch where one does is sent key by key (KEYS).
_IDS = """
local ids = {}
if #KEYS > 0 then
  ids = KEYS
else
  for id in string.gmatch(ARGV[3], "[^\\n]+") do ids[#ids + 1] = ARGV[1] .. id end
end
"""
# Per key: 0 when this call set the pending mark, 1 when the id was seen, 2 when another claim is pending.
_CLAIM_SCRIPT = (
    _IDS
    + """
local out = {}
for i, key in ipairs(ids) do
  if redis.call('SET', key, 'p', 'NX', 'EX', ARGV[2]) then
    out[i] = 0
  elseif redis.call('GET', key) == '1' then
    out[i] = 1
  else
    out[i] = 2
  end
end
return out
"""
)
_CONFIRM_SCRIPT = (
    _IDS
    + """
for _, key in ipairs(ids) do
  redis.call('SET', key, '1', 'EX', ARGV[2])
end
return #ids
"""
)


class Deduplicator:
    """Claim event ids in Redis so that duplicates within ``window_s`` are accepted once."""

    def __init__(self, redis: Redis, *, prefix: str, window_s: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:ingest:dedup:"
        self._window = window_s
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._confirm = redis.register_script(_CONFIRM_SCRIPT)

    async def claim(self, event_ids: list[str]) -> list[Claim]:
        """Claim each id (one script call); return whether it is new, already seen, or pending elsewhere."""
        if not event_ids:
            return []
        codes = await self._claim(**self._ids(event_ids, PENDING_TTL_S))
        return [_CLAIMS[code] for code in codes]

    async def confirm(self, event_ids: list[str]) -> None:
        """Mark claimed ids as seen for the dedup window (their events are durable now)."""
        if event_ids:
            await self._confirm(**self._ids(event_ids, self._window))

    def _ids(self, event_ids: list[str], ttl_s: int) -> dict[str, list[Any]]:
        """Return a script's keys and arguments for ``event_ids``: joined in one argument where possible."""
        joined = "\n".join(event_ids)
        if joined.count("\n") == len(event_ids) - 1 and "" not in event_ids:
            return {"keys": [], "args": [self._prefix, ttl_s, joined]}
        return {"keys": [self._prefix + event_id for event_id in event_ids], "args": [self._prefix, ttl_s, ""]}

    async def release(self, event_ids: list[str]) -> None:
        """Give claimed ids back (their events were not accepted after all)."""
        if event_ids:
            await self._redis.delete(*(self._prefix + event_id for event_id in event_ids))
