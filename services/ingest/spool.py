"""The durable spool: an event is acknowledged only once it is fsync'd into an append-only segment file.

Layout: ``<spool_dir>/slot-<n>/`` holds one process's segments; the process keeps an exclusive ``flock`` on
``slot-<n>/LOCK`` for its lifetime, so several processes sharing one data dir never write the same files, and
after a hard kill the lock vanishes with the process and the next one (or a sibling) adopts the slot.

Segments are JSON-lines files named ``<run id>-<seq>`` (the run id starts with the start time in ms, so
names sort in acceptance order across restarts). The active segment is ``.open``; sealing fsyncs, closes and
renames it to ``.seg``; a sealed segment never changes, which makes every re-ship after a crash produce the
same archive objects under the same keys. Appends are grouped: concurrent requests share one write + fsync.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shared.logging import get_logger

log = get_logger(__name__)

Day = tuple[str, str]  # (source, "YYYY-MM-DD")
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class SpoolFullError(Exception):
    """The spool reached its configured bound; the caller must refuse (503) rather than drop."""


@dataclass
class Segment:
    """One spool file and what it holds."""

    path: Path
    events: int = 0
    size: int = 0
    days: set[Day] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    fd: int | None = None

    @property
    def name(self) -> str:
        """Return the segment's stable name (used in archive keys)."""
        return self.path.stem


def days_of_lines(data: bytes) -> set[Day]:
    """Return the (source, day) pairs of the records in ``data`` (unparseable lines are skipped)."""
    days: set[Day] = set()
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
            days.add((str(record["source"]), str(record["event_time"])[:10]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return days


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Slot:
    """A locked spool folder: either this process's own, or an orphan adopted to drain it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def try_lock(self) -> bool:
        """Take the slot's exclusive lock without waiting; return whether it is now ours."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def release(self) -> None:
        """Drop the lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover(self) -> list[Segment]:
        """Seal what a dead owner left open (cutting a torn last line) and return the sealed segments in order."""
        for open_file in sorted(self.path.glob("*.open")):
            data = open_file.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                log.warning("spool_torn_tail_cut", segment=open_file.stem, dropped_bytes=len(data) - len(complete))
                with open_file.open("r+b") as handle:
                    handle.truncate(len(complete))
                    handle.flush()
                    os.fsync(handle.fileno())
            if complete:
                open_file.rename(open_file.with_suffix(".seg"))
            else:
                open_file.unlink()
        _fsync_dir(self.path)
        segments = []
        for path in sorted(self.path.glob("*.seg")):
            data = path.read_bytes()
            segments.append(Segment(path=path, events=data.count(b"\n"), size=len(data), days=days_of_lines(data)))
        return segments


class Spool:
    """This process's spool: group-committed appends, segment rotation, and the list of sealed segments."""

    def __init__(self, root: Path, *, max_bytes: int, segment_max_events: int, segment_max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.segment_max_events = segment_max_events
        self.segment_max_bytes = segment_max_bytes
        self.run_id = f"{int(time.time() * 1000):013d}{secrets.token_hex(3)}"
        self.slot: Slot | None = None
        self._sealed: list[Segment] = []
        self._active: Segment | None = None
        self._seq = 0
        self._bytes = 0
        self._pending: list[bytes] = []
        self._pending_events = 0
        self._pending_bytes = 0
        self._pending_days: set[Day] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._closing = False
        self._committer: asyncio.Task[None] | None = None
        self.sealed_event = asyncio.Event()

    async def open(self) -> None:
        """Lock a free slot, adopt what a previous owner left there, and start the committer."""
        self.root.mkdir(parents=True, exist_ok=True)
        index = 0
        while True:
            slot = Slot(self.root / f"slot-{index}")
            if slot.try_lock():
                break
            index += 1
        self.slot = slot
        self._sealed = await asyncio.to_thread(slot.recover)
        self._bytes = sum(seg.size for seg in self._sealed)
        self._committer = asyncio.create_task(self._commit_loop(), name="spool-committer")
        log.info("spool_opened", slot=slot.path.name, recovered_segments=len(self._sealed), bytes=self._bytes)

    async def close(self) -> None:
        """Write what is pending and seal the active segment (the slot stays locked until ``release``)."""
        self._closing = True
        self._wake.set()
        if self._committer is not None:
            await self._committer
        await self.seal(force=True)

    def release(self) -> None:
        """Unlock the slot; what it still holds is shipped by the next owner."""
        if self.slot is not None:
            self.slot.release()

    @property
    def bytes_used(self) -> int:
        """Return the bytes held (sealed + active + waiting for the next group commit)."""
        return self._bytes + self._pending_bytes

    def sealed(self) -> list[Segment]:
        """Return the sealed segments, oldest first."""
        return list(self._sealed)

    def pending_days(self) -> set[Day]:
        """Return the (source, day) pairs not yet shipped from this spool."""
        days = set(self._pending_days)
        for seg in self._sealed:
            days |= seg.days
        if self._active is not None:
            days |= self._active.days
        return days

    async def append(self, data: bytes, events: int, days: set[Day]) -> None:
        """Append ``events`` records (``data``: JSON lines, each ending in a newline); return once they are on disk.

        Raises SpoolFullError when the spool is at its bound (or closing).
        """
        size = len(data)
        if self._closing:
            raise SpoolFullError("spool is closing")
        if self.bytes_used + size > self.max_bytes:
            raise SpoolFullError(f"spool holds {self.bytes_used} bytes of {self.max_bytes}")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(data)
        self._pending_events += events
        self._pending_bytes += size
        self._pending_days |= days
        self._waiters.append(waiter)
        self._wake.set()
        # A cancelled caller cancels only its own waiter: the group write goes ahead and skips done waiters.
        await waiter

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending:
                await self._commit_group()
            elif self._closing:
                return

    async def _commit_group(self) -> None:
        chunks, waiters, days, size = self._pending, self._waiters, self._pending_days, self._pending_bytes
        events = self._pending_events
        self._pending, self._waiters, self._pending_days, self._pending_bytes = [], [], set(), 0
        self._pending_events = 0
        try:
            async with self._io_lock:
                segment = await self._writable_segment()
                try:
                    await asyncio.to_thread(_write_and_sync, segment.fd, b"".join(chunks))
                except OSError as exc:
                    # A short write (disk full) leaves a torn line the next group would be appended to, gluing
                    # an acknowledged event onto garbage: cut the file back to what was acknowledged.
                    await asyncio.to_thread(_truncate, segment.fd, segment.size)
                    if exc.errno in _DISK_FULL:
                        raise SpoolFullError(f"no space left for the spool: {exc.strerror}") from exc
                    raise
                segment.events += events
                segment.size += size
                segment.days |= days
                self._bytes += size
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError("spool stopped"))
            if not isinstance(exc, Exception):
                raise
            log.exception("spool_write_failed")
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _writable_segment(self) -> Segment:
        active = self._active
        if active is not None and (active.events >= self.segment_max_events or active.size >= self.segment_max_bytes):
            await self._seal_locked()
            active = None
        if active is None:
            assert self.slot is not None
            path = self.slot.path / f"{self.run_id}-{self._seq:08d}.open"
            self._seq += 1
            fd = await asyncio.to_thread(_create_segment_file, path)
            active = self._active = Segment(path=path, fd=fd)
        return active

    async def seal(self, *, max_age_s: float = 0.0, force: bool = False) -> bool:
        """Seal the active segment when it is older than ``max_age_s`` or full (or always with ``force``)."""
        async with self._io_lock:
            active = self._active
            if active is None or active.events == 0:
                return False
            due = (
                force
                or time.monotonic() - active.created >= max_age_s
                or active.events >= self.segment_max_events
                or active.size >= self.segment_max_bytes
            )
            if due:
                await self._seal_locked()
            return due

    async def _seal_locked(self) -> None:
        active = self._active
        if active is None:
            return
        self._active = None
        sealed_path = active.path.with_suffix(".seg")

        def _seal() -> None:
            assert active.fd is not None
            os.close(active.fd)
            active.path.rename(sealed_path)
            _fsync_dir(sealed_path.parent)

        await asyncio.to_thread(_seal)
        active.fd = None
        active.path = sealed_path
        self._sealed.append(active)
        self.sealed_event.set()

    async def remove(self, segment: Segment) -> None:
        """Forget a shipped segment and delete its file."""
        await asyncio.to_thread(segment.path.unlink, missing_ok=True)
        if segment in self._sealed:
            self._sealed.remove(segment)
            self._bytes -= segment.size

    def orphan_slots(self) -> list[Slot]:
        """Lock and return other slots whose owner is gone and that still hold segments."""
        slots = []
        for path in sorted(self.root.glob("slot-*")):
            if self.slot is not None and path == self.slot.path:
                continue
            if not any(path.glob("*.seg")) and not any(path.glob("*.open")):
                continue
            slot = Slot(path)
            if slot.try_lock():
                slots.append(slot)
        return slots


def _create_segment_file(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _fsync_dir(path.parent)
    return fd


def _write_and_sync(fd: int | None, data: bytes) -> None:
    assert fd is not None
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _truncate(fd: int | None, size: int) -> None:
    assert fd is not None
    os.ftruncate(fd, size)
    os.fsync(fd)


def read_segment_lines(path: Path) -> list[bytes]:
    """Return the complete lines of a sealed segment (without their newlines)."""
    data = path.read_bytes()
    return [line for line in data.split(b"\n") if line]
