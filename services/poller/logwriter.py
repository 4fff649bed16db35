"""Hourly JSON-lines logs per device: ``<log_dir>/<Y-M-D-H>/iseif-rainforest-<cloud_id>-<Y-M-D-H>.jl``.

Lines are buffered in memory and appended once per flush in a worker thread, so thousands of
devices cost one open/append/close per file per flush instead of one per reading, and the event
loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from pathlib import Path

HOUR_FORMAT = "%Y-%m-%d-%H"


def log_file_name(cloud_id: str, hour: str) -> str:
    """Return the file name of a device's hour (``hour`` as Y-M-D-H)."""
    return f"iseif-rainforest-{cloud_id}-{hour}.jl"


def log_path(log_dir: Path, cloud_id: str, when: datetime) -> Path:
    """Return the file a reading taken at ``when`` (UTC) belongs to."""
    hour = when.strftime(HOUR_FORMAT)
    return log_dir / hour / log_file_name(cloud_id, hour)


class HourlyLogWriter:
    """Buffer reading lines and append them to their hour files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._pending: defaultdict[tuple[str, str], list[bytes]] = defaultdict(list)
        self._made: set[str] = set()
        self._lock = asyncio.Lock()

    def append(self, cloud_id: str, hour: str, line: bytes) -> None:
        """Queue one line (ending with a newline) for a device's hour file."""
        self._pending[(hour, cloud_id)].append(line)

    async def flush(self) -> int:
        """Append everything queued so far; return the number of lines written."""
        async with self._lock:
            batch, self._pending = self._pending, defaultdict(list)
            if not batch:
                return 0
            try:
                return await asyncio.to_thread(self._write, batch)
            except BaseException:
                # Put the lines back in front of anything newer so nothing is lost on a disk error.
                for key, lines in batch.items():
                    self._pending[key][:0] = lines
                raise

    def _write(self, batch: dict[tuple[str, str], list[bytes]]) -> int:
        written = 0
        for (hour, cloud_id), lines in batch.items():
            directory = self.log_dir / hour
            if hour not in self._made:
                directory.mkdir(parents=True, exist_ok=True)
                self._made.add(hour)
            path = directory / log_file_name(cloud_id, hour)
            try:
                handle = open(path, "ab")
            except FileNotFoundError:  # the hour's directory was rotated away: late lines start it again
                directory.mkdir(parents=True, exist_ok=True)
                handle = open(path, "ab")
            with handle:
                handle.write(b"".join(lines))
            written += len(lines)
            lines.clear()
        if len(self._made) > 48:
            self._made.clear()
        return written
