"""Task state in Redis: one hash per target, changed only by compare-and-set (a Lua script).

States: PENDING (nothing known) -> WAITING (submitted, requirements not built) -> QUEUED (one arq job enqueued)
-> RUNNING (an owner holds a lease it renews by heartbeat) -> DONE; a failed attempt goes to RETRYABLE (another
attempt is scheduled) or, once the class's retries are spent, FAILED. An expired lease counts as a failed
attempt. Every transition names the states it may start from (and, for a running task, its owner), so two
workers, two submits or a sweep racing a worker cannot both win. S3's ``_SUCCESS`` marker stays the truth
about completeness: Redis only says who is doing what.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.transform.settings import TransformSettings

T = TypeVar("T")

PENDING, WAITING, QUEUED, RUNNING, RETRYABLE, FAILED, DONE = (
    "PENDING",
    "WAITING",
    "QUEUED",
    "RUNNING",
    "RETRYABLE",
    "FAILED",
    "DONE",
)
ACTIVE = (WAITING, QUEUED, RUNNING, RETRYABLE)
ANY = (PENDING, WAITING, QUEUED, RUNNING, RETRYABLE, FAILED, DONE)

# KEYS: task hash, active set. ARGV: allowed states (comma-separated; a missing hash is PENDING), required owner
# ('' for any), lease deadline the stored lease must be before ('' for none), '1' to add one attempt, '1' to reset
# attempts, the active set member, then field/value pairs (one of them 'state'). Returns {1, attempts} or {0, state}.
_CAS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'PENDING'
if not string.find(',' .. ARGV[1] .. ',', ',' .. state .. ',', 1, true) then return {0, state} end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return {0, state} end
if ARGV[3] ~= '' then
  local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
  if lease >= tonumber(ARGV[3]) then return {0, state} end
end
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'attempts', 0) end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if ARGV[4] == '1' then attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
local new_state = state
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'state' then new_state = ARGV[i + 1] end
end
if new_state == 'WAITING' or new_state == 'QUEUED' or new_state == 'RUNNING' or new_state == 'RETRYABLE' then
  redis.call('SADD', KEYS[2], ARGV[6])
else
  redis.call('SREM', KEYS[2], ARGV[6])
end
return {1, attempts}
"""


@dataclass
class TaskRecord:
    """What Redis holds about one target."""

    target: str
    fields: dict[str, str]

    @property
    def state(self) -> str:
        """Return the stored state (PENDING when nothing is stored)."""
        return self.fields.get("state", PENDING)

    @property
    def attempts(self) -> int:
        """Return how many attempts started."""
        return int(self.fields.get("attempts", "0") or 0)

    @property
    def requires(self) -> list[str]:
        """Return the targets this task reads."""
        return json.loads(self.fields.get("requires", "[]"))

    def number(self, name: str) -> float | None:
        """Return a numeric field (a timestamp) or None."""
        value = self.fields.get(name)
        return float(value) if value else None


class ChainStore:
    """Keys and transitions of chain state for one deployment (``settings.resource_prefix``)."""

    def __init__(self, redis: Redis, settings: TransformSettings) -> None:
        self.redis = redis
        self.base = f"{settings.resource_prefix}:transform:chain"
        self._cas = redis.register_script(_CAS)

    def task_key(self, target: str) -> str:
        """Return the hash of a target's state."""
        return f"{self.base}:task:{target}"

    def dependents_key(self, target: str) -> str:
        """Return the set of targets that wait on ``target``."""
        return f"{self.base}:dependents:{target}"

    @property
    def active_key(self) -> str:
        """Return the set of targets in an active state (what the sweep looks at)."""
        return f"{self.base}:active"

    @property
    def runs_key(self) -> str:
        """Return the sorted set of run ids by submission time."""
        return f"{self.base}:runs"

    def run_key(self, run_id: str) -> str:
        """Return the hash of one run."""
        return f"{self.base}:run:{run_id}"

    async def get(self, target: str) -> TaskRecord:
        """Return a target's record."""
        raw = await self.redis.hgetall(self.task_key(target))
        return TaskRecord(target, {k.decode(): v.decode() for k, v in raw.items()})

    async def register(self, target: str, *, static: dict[str, str], requires: list[str]) -> None:
        """Store what a target is (task, params, requirements) and link it to its requirements."""
        key = self.task_key(target)
        async with self.redis.pipeline(transaction=True) as pipe:
            for name, value in {**static, "requires": json.dumps(requires)}.items():
                pipe.hsetnx(key, name, value)
            for requirement in requires:
                pipe.sadd(self.dependents_key(requirement), target)
            await pipe.execute()

    async def dependents(self, target: str) -> list[str]:
        """Return the targets that declared ``target`` as a requirement."""
        return sorted(m.decode() for m in await self.redis.smembers(self.dependents_key(target)))

    async def transition(
        self,
        target: str,
        allowed: tuple[str, ...],
        fields: dict[str, Any],
        *,
        owner: str = "",
        lease_before: float | None = None,
        new_attempt: bool = False,
        reset_attempts: bool = False,
    ) -> int | None:
        """Set ``fields`` if the state is one of ``allowed`` (and the owner/lease match); return attempts or None."""
        values: list[Any] = []
        for name, value in {**fields, "updated_at": time.time()}.items():
            values += [name, "" if value is None else str(value)]
        won, result = await self._cas(
            keys=[self.task_key(target), self.active_key],
            args=[
                ",".join(allowed),
                owner,
                "" if lease_before is None else repr(lease_before),
                "1" if new_attempt else "0",
                "1" if reset_attempts else "0",
                target,
                *values,
            ],
        )
        return int(result) if int(won) == 1 else None


async def resilient(call: Callable[[], Awaitable[T]], *, attempts: int = 30, delay_s: float = 0.5) -> T:
    """Call ``call``, retrying while Redis is unreachable (a restart) for up to ``attempts * delay_s`` seconds."""
    for attempt in range(attempts):
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay_s)
    raise AssertionError("unreachable")
