"""The device registry in Redis: one hash per device, an ordered index, per-state sets.

Credentials are stored only as a Fernet token (``secret``) and never leave this module in clear
except to the poller's Eagle client. ``protocol`` and ``host`` say how the device is reached; a hash without
``protocol`` (registered before protocols existed) is a ``cloud`` device. Multi-key updates run as Lua
scripts so the index, the state sets and the registry version never disagree.

What is durable and what is derived: with a :class:`RegistryStore` (as the services wire it), each registration
(cloud id, owner, credential token, protocol, host, an operator's pause, created_at, deletion) is written to the
metadata database first and to Redis second, so an acknowledged change survives Redis losing its data. Redis
is then a rebuildable view: when the marker key ``<prefix>:registry:loaded`` is missing (a flush, a new Redis),
:meth:`Registry.ensure_loaded` reloads every device from the database through the same Lua save. Runtime state
stays in Redis only and is lost with it: states observed by polling (``auth_failed``/``unreachable``; a rebuilt
device starts ``active``, or ``paused`` if an operator paused it), last error, reading counters, first/last
timestamps, latest readings, the credential version. Without a store (some tests, the benchmark) the registry
lives in Redis only.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.fernet import Fernet
from pydantic import ValidationError
from redis.asyncio import Redis

from services.poller.crypto import decrypt_credentials, encrypt_credentials
from services.poller.devices.transport import unsendable_credential
from services.poller.keys import Keys, shard_of
from services.poller.models import DEVICE_STATES, DeviceCreate, DeviceRead, DeviceUpdate, ItemResult, check_host
from services.poller.registry_store import RegistryStore, StoredDevice
from shared.errors import ConflictError, NotFoundError, UnprocessableError, validation_details
from shared.logging import get_logger

log = get_logger(__name__)

SaveMode = Literal["create", "update", "upsert"]

_SAVE = """
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists and ARGV[1] == 'create' then return 'exists' end
if (not exists) and ARGV[1] == 'update' then return 'missing' end
local old = redis.call('HGET', KEYS[1], 'state')
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local new = old
if not exists then
  redis.call('HSET', KEYS[1], 'cloud_id', ARGV[2], 'total_events_logged', 0, 'cred_version', 1)
  redis.call('HSETNX', KEYS[1], 'created_at', ARGV[6])
  new = 'active'
elseif ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[1], 'cred_version', 1)
  if old == 'auth_failed' or old == 'unreachable' then new = 'active' end
end
if ARGV[4] ~= '' then new = ARGV[4] end
if new ~= old then
  if old then redis.call('SREM', ARGV[3] .. old, ARGV[2]) end
  redis.call('HSET', KEYS[1], 'state', new)
  if new == 'active' then redis.call('HDEL', KEYS[1], 'last_error', 'last_error_at') end
end
redis.call('SADD', ARGV[3] .. new, ARGV[2])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[6])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('INCR', KEYS[3])
if exists then return 'updated' end
return 'created'
"""

_DELETE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
redis.call('SREM', ARGV[1] .. state, ARGV[2])
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
return 1
"""

# The poller's state changes apply only to the credentials it used and never override a pause.
_SET_STATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'cred_version') ~= ARGV[3] then return 0 end
local old = redis.call('HGET', KEYS[1], 'state')
if old == 'paused' then return 0 end
if ARGV[4] == 'active' then
  redis.call('HDEL', KEYS[1], 'last_error', 'last_error_at')
else
  redis.call('HSET', KEYS[1], 'last_error', ARGV[5], 'last_error_at', ARGV[6])
end
if old ~= ARGV[4] then
  redis.call('SREM', ARGV[1] .. old, ARGV[2])
  redis.call('SADD', ARGV[1] .. ARGV[4], ARGV[2])
  redis.call('HSET', KEYS[1], 'state', ARGV[4])
end
return 1
"""

# ARGV: prefix, then (cloud_id, unix timestamp, latest reading JSON) triples.
_RECORD_READS = """
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 3 do
  local k = p .. ':device:' .. ARGV[i]
  if redis.call('EXISTS', k) == 1 then
    redis.call('HINCRBY', k, 'total_events_logged', 1)
    redis.call('HSETNX', k, 'first_timestamp', ARGV[i + 1])
    redis.call('HSET', k, 'last_timestamp', ARGV[i + 1])
    redis.call('SET', p .. ':latest:' .. ARGV[i], ARGV[i + 2], 'EX', 86400)
    n = n + 1
  end
end
return n
"""


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _time(value: bytes | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None


def _now() -> datetime:
    return datetime.now(UTC)


def check_credentials(protocol: str, *, user: str, password: str, user_field: str) -> None:
    """Raise 422 naming the credential field ``protocol`` cannot send (the value is never quoted)."""
    unsendable = unsendable_credential(protocol, user, password)
    if unsendable is None:
        return
    which, why = unsendable
    field = "eagle_password" if which == "password" else user_field
    raise UnprocessableError(
        f"invalid request: {field}", details=[{"field": field, "reason": why, "type": "value_error"}]
    )


class Registry:
    """Device registry operations (used by the API and by the poller)."""

    def __init__(
        self, redis: Redis, *, prefix: str, fernet: Fernet, shard_count: int, store: RegistryStore | None = None
    ) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.store = store
        self.loaded_key = f"{prefix}:registry:loaded"
        self._rebuild_lock = f"{prefix}:registry:rebuilding"
        self.fernet = fernet
        self.shard_count = shard_count
        self._save = redis.register_script(_SAVE)
        self._delete = redis.register_script(_DELETE)
        self._set_state = redis.register_script(_SET_STATE)
        self._record = redis.register_script(_RECORD_READS)

    async def _run_save(
        self, *, cloud_id: str, mode: SaveMode, fields: dict[str, str], state: str | None, creds_changed: bool
    ) -> str:
        k = self.keys
        changed = "1" if creds_changed else "0"
        argv: list[Any] = [mode, cloud_id, k.state_prefix, state or "", changed, repr(time.time())]
        for name, value in fields.items():
            argv += [name, value]
        result = await self._save(keys=[k.device(cloud_id), k.index, k.version], args=argv)
        return result.decode() if isinstance(result, bytes) else str(result)

    def _prepare(self, device_in: DeviceCreate) -> dict[str, str]:
        """Return the hash fields of a new registration (422 for credentials its protocol cannot send)."""
        user, password = device_in.eagle_user or device_in.owner_email, device_in.eagle_password.get_secret_value()
        user_field = "eagle_user" if device_in.eagle_user else "owner_email"
        check_credentials(device_in.protocol, user=user, password=password, user_field=user_field)
        return {
            "owner_email": device_in.owner_email,
            "secret": encrypt_credentials(self.fernet, user=user, password=password),
            "protocol": device_in.protocol,
            "host": device_in.host or "",
        }

    async def create(self, *, device_in: DeviceCreate, upsert: bool = False) -> str:
        """Register a device; return "created", "updated" (upsert) or "exists" (422 for credentials it cannot send)."""
        return (await self._create_all([(device_in, self._prepare(device_in))], upsert=upsert))[0]

    async def _create_all(self, devices: list[tuple[DeviceCreate, dict[str, str]]], *, upsert: bool) -> list[str]:
        if self.store is None:
            mode: SaveMode = "upsert" if upsert else "create"
            return [
                await self._run_save(
                    cloud_id=device_in.cloud_id, mode=mode, fields=fields, state=device_in.state, creds_changed=True
                )
                for device_in, fields in devices
            ]
        wanted = [
            StoredDevice(cloud_id=device_in.cloud_id, state=device_in.state, created_at=_now(), **fields)
            for device_in, fields in devices
        ]
        saved = await self.store.save_many(wanted, create_only=not upsert)
        for (device_in, _fields), (status, stored) in zip(devices, saved, strict=True):
            if status != "exists":
                # The database said what this is; Redis follows (it may have lost the device, or still hold it).
                await self._run_save(
                    cloud_id=device_in.cloud_id,
                    mode="upsert",
                    fields=stored.redis_fields(),
                    state=device_in.state,
                    creds_changed=True,
                )
        return [status for status, _stored in saved]

    async def create_many(self, *, items: list[dict[str, Any]], upsert: bool) -> list[ItemResult]:
        """Register several devices, validating each on its own so one bad line fails alone."""
        results: dict[int, ItemResult] = {}
        valid: list[tuple[int, DeviceCreate, dict[str, str]]] = []
        for index, item in enumerate(items):
            cloud_id = item.get("cloud_id") if isinstance(item, dict) else None
            try:
                device_in = DeviceCreate.model_validate(item)
            except ValidationError as exc:
                shown = cloud_id if isinstance(cloud_id, str) else None
                results[index] = ItemResult(
                    index=index, cloud_id=shown, status="invalid", errors=validation_details(exc.errors())
                )
                continue
            try:
                valid.append((index, device_in, self._prepare(device_in)))
            except UnprocessableError as exc:
                results[index] = ItemResult(
                    index=index, cloud_id=device_in.cloud_id, status="invalid", errors=exc.details
                )
        statuses = await self._create_all([(d, f) for _i, d, f in valid], upsert=upsert)
        for (index, device_in, _fields), status in zip(valid, statuses, strict=True):
            errors = [{"field": "cloud_id", "reason": "already registered"}] if status == "exists" else []
            results[index] = ItemResult(index=index, cloud_id=device_in.cloud_id, status=status, errors=errors)
        return [results[index] for index in sorted(results)]

    @staticmethod
    def _connection(stored: tuple[str | None, str | None], device_in: DeviceUpdate) -> dict[str, str]:
        """Return the protocol/host fields an update sets (checked together with the stored protocol/host)."""
        if device_in.protocol is None and device_in.host is None:
            return {}
        protocol = device_in.protocol or stored[0] or "cloud"
        host = device_in.host if device_in.host is not None else stored[1] or None
        if device_in.protocol == "cloud" and device_in.host is None:
            host = None  # moving a device to the cloud drops its LAN address
        try:
            check_host(protocol, host)
        except ValueError as exc:
            # The body alone is valid (the schema refuses cloud + host); it conflicts with the stored protocol/host.
            error = UnprocessableError if device_in.protocol == "cloud" else ConflictError
            raise error(str(exc), details=[{"field": "host", "reason": str(exc)}]) from exc
        return {"protocol": protocol, "host": host or ""}

    async def update(self, *, cloud_id: str, device_in: DeviceUpdate) -> DeviceRead:
        """Change a device; new credentials or a new protocol/host re-enable it."""
        current: StoredDevice | None = None
        if self.store is not None:
            current = await self.store.get(cloud_id)
            if current is None and await self._adopt(cloud_id):  # a device Redis held from before the database
                current = await self.store.get(cloud_id)
            if current is None:
                raise NotFoundError(f"device {cloud_id} is not registered")
            protocol_host, token = (current.protocol, current.host), current.secret or None
        else:
            raw = await self.redis.hmget(self.keys.device(cloud_id), ["protocol", "host", "secret"])
            protocol_host, token = (_text(raw[0]), _text(raw[1])), _text(raw[2])
        fields: dict[str, str] = self._connection(protocol_host, device_in)
        if device_in.owner_email is not None:
            fields["owner_email"] = device_in.owner_email
        creds_changed = (
            device_in.eagle_password is not None or device_in.eagle_user is not None or bool(fields.get("protocol"))
        )
        if creds_changed:
            creds = decrypt_credentials(self.fernet, token) if token else None
            user = device_in.eagle_user or (creds[0] if creds else None) or device_in.owner_email or ""
            password = (
                device_in.eagle_password.get_secret_value()
                if device_in.eagle_password is not None
                else (creds[1] if creds else "")
            )
            protocol = fields.get("protocol") or protocol_host[0] or "cloud"
            check_credentials(protocol, user=user, password=password, user_field="eagle_user")
            fields["secret"] = encrypt_credentials(self.fernet, user=user, password=password)
        state: str | None = device_in.state
        mode: SaveMode = "update"
        if current is not None:
            _status, stored = await self.store.save(  # type: ignore[union-attr]
                replace(current, **fields, state=device_in.state or current.state)
            )
            # Redis gets the whole registration: it may have lost the device since the database got it.
            fields, mode = stored.redis_fields(), "upsert"
            state = device_in.state or ("paused" if stored.state == "paused" else None)
        status = await self._run_save(
            cloud_id=cloud_id, mode=mode, fields=fields, state=state, creds_changed=creds_changed
        )
        if status == "missing":
            raise NotFoundError(f"device {cloud_id} is not registered")
        return await self.get(cloud_id)

    async def credentials(self, cloud_id: str) -> tuple[str, str] | None:
        """Return the device's decrypted (user, password), or None when it is unknown."""
        token = await self.redis.hget(self.keys.device(cloud_id), "secret")
        return decrypt_credentials(self.fernet, token.decode()) if token else None

    async def delete(self, cloud_id: str) -> None:
        """Remove a device and its latest reading (the database first: a rebuild never brings it back)."""
        in_db = await self.store.delete(cloud_id) if self.store is not None else False
        if not await self._delete_from_redis(cloud_id) and not in_db:
            raise NotFoundError(f"device {cloud_id} is not registered")

    async def _delete_from_redis(self, cloud_id: str) -> bool:
        k = self.keys
        keys = [k.device(cloud_id), k.index, k.version, k.latest(cloud_id)]
        return bool(await self._delete(keys=keys, args=[k.state_prefix, cloud_id]))

    async def ensure_loaded(self) -> bool:
        """Rebuild Redis from the database when the loaded marker is missing; return whether this call rebuilt.

        One process rebuilds at a time (a short Redis lock); others skip and check again later.
        """
        if self.store is None or await self.redis.exists(self.loaded_key):
            return False
        if not await self.redis.set(self._rebuild_lock, "1", nx=True, ex=300):
            return False
        try:
            await self._rebuild()
        finally:
            await self.redis.delete(self._rebuild_lock)
        return True

    async def _rebuild(self) -> None:
        assert self.store is not None
        rows = await self.store.all()
        restored = 0
        for row in rows:
            if row.deleted:
                continue
            # "create" keeps a hash that is already there (written since, by the API, and as new as the row).
            status = await self._run_save(
                cloud_id=row.cloud_id,
                mode="create",
                fields=row.redis_fields(),
                state="paused" if row.state == "paused" else None,
                creds_changed=False,
            )
            restored += status == "created"
        # Devices registered before the database kept them live only in Redis: copy them in, once.
        known = {row.cloud_id for row in rows}
        adopted = 0
        for cloud_id in await self.all_ids():
            if cloud_id not in known:
                adopted += await self._adopt(cloud_id)
        # A delete that ran during this rebuild may have removed the hash before it was written back here.
        for row in await self.store.all():
            if row.deleted:
                await self._delete_from_redis(row.cloud_id)
        await self.redis.set(self.loaded_key, repr(time.time()))
        live = sum(not row.deleted for row in rows)
        log.info("registry_rebuilt", devices=live, restored=restored, adopted=adopted)

    async def _adopt(self, cloud_id: str) -> int:
        assert self.store is not None
        data = await self.redis.hgetall(self.keys.device(cloud_id))
        if not data or not data.get(b"secret"):
            return 0
        created = _time(data.get(b"created_at")) or _now()
        device = StoredDevice(
            cloud_id=cloud_id,
            owner_email=_text(data.get(b"owner_email")) or "",
            secret=_text(data.get(b"secret")) or "",
            protocol=_text(data.get(b"protocol")) or "cloud",
            host=_text(data.get(b"host")) or "",
            state="paused" if data.get(b"state") == b"paused" else "active",
            created_at=created,
        )
        return int(await self.store.adopt(device))

    def _to_read(self, data: dict[bytes, bytes]) -> DeviceRead:
        cloud_id = data[b"cloud_id"].decode()
        return DeviceRead(
            cloud_id=cloud_id,
            owner_email=_text(data.get(b"owner_email")) or "",
            protocol=_text(data.get(b"protocol")) or "cloud",  # type: ignore[arg-type]
            host=_text(data.get(b"host")) or None,
            state=_text(data.get(b"state")) or "active",  # type: ignore[arg-type]
            last_error=_text(data.get(b"last_error")),
            last_error_at=_time(data.get(b"last_error_at")),
            total_events_logged=int(data.get(b"total_events_logged") or 0),
            first_timestamp=_time(data.get(b"first_timestamp")),
            last_timestamp=_time(data.get(b"last_timestamp")),
            shard=shard_of(cloud_id, self.shard_count),
            created_at=_time(data.get(b"created_at")),
            updated_at=_time(data.get(b"updated_at")),
        )

    async def get(self, cloud_id: str) -> DeviceRead:
        """Return one device."""
        data = await self.redis.hgetall(self.keys.device(cloud_id))
        if not data:
            raise NotFoundError(f"device {cloud_id} is not registered")
        return self._to_read(data)

    async def page(self, *, cursor: str | None, limit: int) -> tuple[list[DeviceRead], str | None]:
        """Return up to ``limit`` devices after ``cursor`` in cloud-id order, and the next cursor."""
        start = f"({cursor}" if cursor else "-"
        ids = await self.redis.zrangebylex(self.keys.index, start, "+", start=0, num=limit + 1)
        more = len(ids) > limit
        ids = ids[:limit]
        pipe = self.redis.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hgetall(self.keys.device(raw_id.decode()))
        devices = [self._to_read(data) for data in await pipe.execute() if data]
        return devices, (ids[-1].decode() if more and ids else None)

    async def all_ids(self) -> list[str]:
        """Return every registered cloud id."""
        return [raw.decode() for raw in await self.redis.zrange(self.keys.index, 0, -1)]

    async def load_all(
        self, fields: tuple[str, ...] = ("state", "secret", "cred_version", "protocol", "host")
    ) -> dict[str, list[Any]]:
        """Return {cloud_id: [field values]} for every device (the poller's view of the registry)."""
        ids = await self.all_ids()
        out: dict[str, list[Any]] = {}
        for start in range(0, len(ids), 2000):
            chunk = ids[start : start + 2000]
            pipe = self.redis.pipeline(transaction=False)
            for cloud_id in chunk:
                pipe.hmget(self.keys.device(cloud_id), fields)
            for cloud_id, values in zip(chunk, await pipe.execute(), strict=True):
                if values[0] is not None:
                    out[cloud_id] = [_text(v) for v in values]
        return out

    async def version(self) -> int:
        """Return the registry version (bumped on every change made through the API)."""
        return int(await self.redis.get(self.keys.version) or 0)

    async def set_state(self, *, cloud_id: str, cred_version: str, state: str, error: str | None = None) -> bool:
        """Record a state the poller observed, unless the credentials changed or the device was paused meanwhile."""
        k = self.keys
        args = [k.state_prefix, cloud_id, cred_version, state, error or "", repr(time.time())]
        return bool(await self._set_state(keys=[k.device(cloud_id)], args=args))

    async def record_reads(self, rows: list[tuple[str, float, bytes]]) -> int:
        """Count readings per device, keep first/last timestamps and the latest reading; return devices updated."""
        if not rows:
            return 0
        args: list[Any] = [self.keys.prefix]
        for cloud_id, timestamp, latest in rows:
            args += [cloud_id, repr(timestamp), latest]
        return int(await self._record(keys=[], args=args))

    async def latest(self, cloud_id: str) -> bytes | None:
        """Return the device's newest reading as stored JSON, or None."""
        return await self.redis.get(self.keys.latest(cloud_id))

    async def latest_reading(self, cloud_id: str) -> bytes:
        """Return the device's newest reading as stored JSON; not found for unknown devices or no reading yet."""
        raw = await self.latest(cloud_id)
        if raw is None:
            await self.get(cloud_id)  # unknown devices say so
            raise NotFoundError(f"device {cloud_id} has no reading yet")
        return raw

    async def count_by_state(self) -> dict[str, int]:
        """Return how many devices are in each state."""
        pipe = self.redis.pipeline(transaction=False)
        for state in DEVICE_STATES:
            pipe.scard(self.keys.state_set(state))
        return dict(zip(DEVICE_STATES, await pipe.execute(), strict=True))
