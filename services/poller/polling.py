"""The polling loop: every device on a fixed, jittered schedule, sharded across replicas.

Time is cut into ticks of ``poll_interval_s`` aligned on the Unix epoch (tick k starts at
k * interval), and each tick into slots. A device always fires in the same slot (its phase, a
hash of its cloud id), so the fleet is spread evenly over the interval. Fire times are computed
from the tick number, never from the previous poll, so a slow answer delays nothing else and the
schedule cannot drift. Each poll is its own task under a concurrency bound and a hard timeout
below the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from services.poller.crypto import CredentialError, decrypt_credentials
from services.poller.devices import DeviceAuthError, DeviceError, DeviceUnreachableError, Sample
from services.poller.devices.reader import DeviceReader
from services.poller.http_pool import pool_transport
from services.poller.ingest_client import IngestPoster
from services.poller.keys import phase_of, shard_of
from services.poller.leases import ShardLeases
from services.poller.logwriter import HOUR_FORMAT, HourlyLogWriter
from services.poller.registry import Registry
from services.poller.settings import PollerSettings
from services.poller.stats import STAT_FIELDS, StatsRecorder
from shared.logging import get_logger

log = get_logger(__name__)

SCHEDULED, READS, ON_TIME, LATE, FAILURES, MISSED = range(len(STAT_FIELDS))
SKIP_STATES = frozenset({"paused", "auth_failed"})


@dataclass(slots=True)
class DeviceEntry:
    """The poller's in-memory view of one device."""

    cloud_id: str
    shard: int
    slot: int
    token: str
    cred_version: str
    user: str
    password: str
    state: str
    protocol: str = "cloud"
    host: str | None = None
    summation_due: float = 0.0  # monotonic time after which REST API devices are asked for their totals again
    failures: int = 0
    next_tick: int = 0
    in_flight: bool = False


def _where(exc: BaseException) -> str:
    """Return where ``exc`` was raised, as "file:line in function" (no message, no locals)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"


class Poller:
    """Poll the devices of the shards this replica holds; record, log and forward each reading."""

    def __init__(
        self,
        settings: PollerSettings,
        *,
        redis: Redis,
        http: httpx.AsyncClient,
        registry: Registry,
        poster: IngestPoster | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.registry = registry
        self.client = DeviceReader(
            http,
            cloud_base_url=settings.eagle_base_url,
            transport=pool_transport(http),
            timeout_s=settings.request_timeout_s,
        )
        self.writer = HourlyLogWriter(settings.logs_path)
        self.poster = poster
        self.interval = settings.poll_interval_s
        self.n_slots = max(1, round(self.interval / min(0.05, self.interval / 20)))
        self.slot_width = self.interval / self.n_slots
        self.timeout = settings.request_timeout_s
        self.tolerance = settings.on_time_tolerance_s
        # Overloaded, a poll that could not start within the tolerance is shed rather than run late: the
        # queue stays short, so the polls that do run are on time instead of every poll drifting late.
        self.stale_after = self.tolerance
        self.leases = ShardLeases(
            redis,
            keys=registry.keys,
            replica_id=settings.replica_id,
            shard_count=settings.shard_count,
            lease_ttl_s=settings.lease_ttl_s,
            interval_s=self.interval,
        )
        self.stats = StatsRecorder(redis, keys=registry.keys, interval_s=self.interval)
        self.entries: dict[str, DeviceEntry] = {}
        self.slots: list[dict[str, DeviceEntry]] = [{} for _ in range(self.n_slots)]
        self.semaphore = asyncio.Semaphore(settings.max_concurrency)
        self.stop_event = asyncio.Event()
        self._polls: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._pending_reads: list[tuple[str, float, bytes]] = []
        self._pending_states: list[tuple[str, str, str, str | None]] = []
        self._registry_version = -1
        self._loaded_at = 0.0
        self._wall0 = time.time()
        self._mono0 = time.monotonic()
        logging.getLogger("httpx").setLevel(logging.WARNING)

    # -- registry -------------------------------------------------------------------------------
    async def refresh_registry(self) -> None:
        """Load the registry and reconcile the in-memory devices (keeping back-off state)."""
        self._registry_version = await self.registry.version()
        rows = await self.registry.load_all()
        changed = {
            cloud_id: token
            for cloud_id, (_state, token, *_rest) in rows.items()
            if token and (cloud_id not in self.entries or self.entries[cloud_id].token != token)
        }
        fernet = self.registry.fernet

        def _decrypt() -> dict[str, tuple[str, str] | None]:
            out: dict[str, tuple[str, str] | None] = {}
            for cloud_id, token in changed.items():
                try:
                    out[cloud_id] = decrypt_credentials(fernet, token)
                except CredentialError:
                    out[cloud_id] = None
            return out

        decrypted = await asyncio.to_thread(_decrypt) if changed else {}
        for cloud_id, (state, token, cred_version, protocol, host) in rows.items():
            entry = self.entries.get(cloud_id)
            if cloud_id in decrypted:
                creds = decrypted[cloud_id]
                if creds is None:
                    log.error("device_credentials_unreadable", cloud_id=cloud_id)
                    continue
                if entry is None:
                    slot = int(phase_of(cloud_id) * self.n_slots)
                    entry = DeviceEntry(
                        cloud_id,
                        shard_of(cloud_id, self.settings.shard_count),
                        slot,
                        token,
                        cred_version,
                        creds[0],
                        creds[1],
                        state,
                    )
                    self.entries[cloud_id] = entry
                    self.slots[slot][cloud_id] = entry
                else:
                    entry.token, entry.user, entry.password = token, creds[0], creds[1]
                    entry.failures, entry.next_tick = 0, 0
            if entry is not None:
                entry.state = state
                entry.cred_version = cred_version
                protocol, host = protocol or "cloud", host or None
                if (protocol, host) != (entry.protocol, entry.host):
                    entry.protocol, entry.host = protocol, host
                    entry.failures, entry.next_tick, entry.summation_due = 0, 0, 0.0
        for cloud_id in set(self.entries) - set(rows):
            entry = self.entries.pop(cloud_id)
            self.slots[entry.slot].pop(cloud_id, None)
        self._loaded_at = time.monotonic()
        log.info("registry_loaded", devices=len(self.entries), version=self._registry_version)

    async def _refresh_loop(self) -> None:
        while not self.stop_event.is_set():
            await self._wait(self.settings.registry_check_s)
            try:
                version = await self.registry.version()
                stale = time.monotonic() - self._loaded_at > self.settings.registry_refresh_s
                if version != self._registry_version or stale:
                    await self.refresh_registry()
            except Exception as exc:
                log.warning("registry_refresh_failed", error=type(exc).__name__)

    # -- schedule -------------------------------------------------------------------------------
    def mono_of(self, wall: float) -> float:
        """Return the monotonic time matching a wall-clock time."""
        return wall - self._wall0 + self._mono0

    async def _schedule_loop(self) -> None:
        position = int(time.time() / self.slot_width) + 1
        while not self.stop_event.is_set():
            fire_at = self.mono_of(position * self.slot_width)
            delay = fire_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tick, slot = divmod(position, self.n_slots)
            self._fire(tick, slot, fire_at)
            position += 1

    def _fire(self, tick: int, slot: int, scheduled: float) -> None:
        now = time.monotonic()
        owns = self.leases.owns
        counts = self.stats.tick(tick)
        too_late = now - scheduled > self.interval
        for entry in self.slots[slot].values():
            if entry.state in SKIP_STATES or entry.next_tick > tick or not owns(entry.shard, tick, now):
                continue
            counts[SCHEDULED] += 1
            if entry.in_flight or too_late:
                counts[MISSED] += 1
                continue
            entry.in_flight = True
            task = asyncio.create_task(self._poll(entry, tick, scheduled))
            self._polls.add(task)
            task.add_done_callback(self._polls.discard)

    async def _poll(self, entry: DeviceEntry, tick: int, scheduled: float) -> None:
        try:
            async with self.semaphore:
                started = time.monotonic()
                if started - scheduled > self.stale_after:
                    self.stats.tick(tick)[MISSED] += 1
                    return
                try:
                    # The timeout is httpx's own, its phases summing to request_timeout_s (see PostSender):
                    # cancelling httpx from outside with asyncio.timeout interferes with anyio's cancel
                    # scopes inside httpcore and was seen to stall unrelated tasks under load.
                    with_summation = started >= entry.summation_due
                    sample = await self.client.read(
                        protocol=entry.protocol,
                        cloud_id=entry.cloud_id,
                        user=entry.user,
                        password=entry.password,
                        host=entry.host,
                        with_summation=with_summation,
                    )
                    if with_summation:
                        entry.summation_due = started + self.settings.summation_interval_s
                except DeviceAuthError as exc:
                    self._auth_failed(entry, tick, str(exc))
                except (DeviceUnreachableError, TimeoutError) as exc:
                    self._unreachable(entry, tick, str(exc) or "timeout")
                except DeviceError as exc:
                    self._unreachable(entry, tick, f"bad answer: {exc}")
                else:
                    self._record(entry, tick, scheduled, started, sample)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # No traceback and no message: both can quote the credentials being sent (a UnicodeEncodeError names
            # the character it could not encode). The code location is enough to find the bug; the device shows
            # the failure and backs off instead of crashing again every interval.
            log.error("poll_crashed", cloud_id=entry.cloud_id, error=type(exc).__name__, at=_where(exc))
            self._unreachable(entry, tick, f"poll failed: {type(exc).__name__}")
        finally:
            entry.in_flight = False

    # -- outcomes -------------------------------------------------------------------------------
    def _record(self, entry: DeviceEntry, tick: int, scheduled: float, started: float, sample: Sample) -> None:
        finished = time.monotonic()
        counts = self.stats.tick(tick)
        counts[READS] += 1
        on_time = started - scheduled <= self.tolerance and finished - scheduled <= self.interval
        counts[ON_TIME if on_time else LATE] += 1
        now = datetime.now(UTC)
        read: dict[str, Any] = {
            "cloud_id": entry.cloud_id,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "demand_kw": sample.demand_kw,
            "summation_delivered_kwh": sample.summation_delivered_kwh,
            "summation_received_kwh": sample.summation_received_kwh,
            "raw": sample.raw,
        }
        line = orjson.dumps(read, option=orjson.OPT_APPEND_NEWLINE)
        self.writer.append(entry.cloud_id, now.strftime(HOUR_FORMAT), line)
        self._pending_reads.append((entry.cloud_id, now.timestamp(), line))
        if self.poster is not None:
            # A deterministic id lets ingest drop the duplicate when a retried batch had in fact landed.
            self.poster.add({**read, "event_id": f"meter-{entry.cloud_id}-{int(now.timestamp() * 1_000_000)}"})
        if entry.failures or entry.state == "unreachable":
            entry.failures, entry.next_tick = 0, 0
            if entry.state == "unreachable":
                entry.state = "active"
                self._pending_states.append((entry.cloud_id, entry.cred_version, "active", None))
                log.info("device_recovered", cloud_id=entry.cloud_id)

    def _auth_failed(self, entry: DeviceEntry, tick: int, error: str) -> None:
        self.stats.tick(tick)[FAILURES] += 1
        entry.state = "auth_failed"
        self._pending_states.append((entry.cloud_id, entry.cred_version, "auth_failed", error))
        log.warning("device_auth_failed", cloud_id=entry.cloud_id, error=error)

    def _unreachable(self, entry: DeviceEntry, tick: int, error: str) -> None:
        self.stats.tick(tick)[FAILURES] += 1
        entry.failures += 1
        wait_s = min(self.interval * 2 ** (entry.failures - 1), self.settings.backoff_cap_s)
        entry.next_tick = tick + max(1, round(wait_s / self.interval))
        if entry.state != "unreachable":
            entry.state = "unreachable"
            log.warning("device_unreachable", cloud_id=entry.cloud_id, error=error)
        self._pending_states.append((entry.cloud_id, entry.cred_version, "unreachable", error))

    # -- flushing -------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write queued log lines, counters, states and statistics."""
        await self.writer.flush()
        reads, self._pending_reads = self._pending_reads, []
        for start in range(0, len(reads), 2000):
            await self.registry.record_reads(reads[start : start + 2000])
        states, self._pending_states = self._pending_states, []
        latest: dict[str, tuple[str, str, str | None]] = {}
        for cloud_id, cred_version, state, error in states:
            latest[cloud_id] = (cred_version, state, error)
        for cloud_id, (cred_version, state, error) in latest.items():
            await self.registry.set_state(cloud_id=cloud_id, cred_version=cred_version, state=state, error=error)
        await self.stats.flush()

    async def _flush_loop(self) -> None:
        while not self.stop_event.is_set():
            await self._wait(self.settings.log_flush_s)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("flush_failed", error=type(exc).__name__)

    async def _post_loop(self) -> None:
        assert self.poster is not None
        while not self.stop_event.is_set():
            await self._wait(self.settings.ingest_flush_s)
            with contextlib.suppress(Exception):
                await self.poster.flush()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), timeout=seconds)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the registry, take leases and start the loops."""
        await self.refresh_registry()
        await self.leases.beat()
        loops = [
            self._schedule_loop(),
            self._flush_loop(),
            self._refresh_loop(),
            self.leases.run(self.stop_event, self.settings.heartbeat_s),
        ]
        if self.poster is not None:
            loops.append(self._post_loop())
        self._loops = [asyncio.create_task(loop) for loop in loops]
        log.info("poller_started", replica=self.settings.replica_id, devices=len(self.entries))

    async def stop(self) -> None:
        """Stop polling, let in-flight polls finish, flush, post what is left and give the leases back."""
        self.stop_event.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._polls:
            await asyncio.wait(set(self._polls), timeout=self.timeout + 1)
        with contextlib.suppress(Exception):
            await self.flush()
        if self.poster is not None:
            with contextlib.suppress(Exception):
                await self.poster.flush()
        with contextlib.suppress(Exception):
            await self.leases.release_all()
        log.info("poller_stopped", replica=self.settings.replica_id)

    async def crash(self) -> None:
        """Stop dead without releasing anything (what a killed replica looks like; for tests)."""
        self.stop_event.set()
        tasks = [*self._loops, *self._polls]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
