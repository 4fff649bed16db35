"""Keep the newest record per key when live and replayed records of the same keys arrive in any order.

A replayed record carries ``_replay.original_timestamp`` (its event time) and ``_replay.original_sequence``
(its Kinesis sequence number on the source stream, when known). A live record's version is its own
``event_time`` and the sequence number it got on the stream. The newer version wins; on a tie the record
already held stays (a re-delivery changes nothing). A replayed record annotated ``force_overwrite: true`` always
wins: that is the opt-in for rebuilding state from the archive regardless of what arrived live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, order=True)
class Version:
    """How new a record is: event time first, then its source-stream sequence number (-1 when unknown)."""

    event_time: datetime
    sequence: int = -1


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return datetime.min.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00").replace(" ", "T")
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_sequence(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def version_of(record: dict[str, Any], sequence_number: str | None = None) -> Version:
    """Return the version of a live record (with its stream sequence number) or of a replayed one."""
    replay = record.get("_replay")
    if isinstance(replay, dict):
        return Version(_parse_time(replay.get("original_timestamp")), _parse_sequence(replay.get("original_sequence")))
    return Version(_parse_time(record.get("event_time")), _parse_sequence(sequence_number))


class LatestByKey:
    """Consumer state: the newest record per key, whichever stream it came from."""

    def __init__(self, key: str | Callable[[dict[str, Any]], str] = "event_id") -> None:
        self._key = (lambda r: str(r.get(key))) if isinstance(key, str) else key
        self.records: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, Version] = {}

    def apply(self, record: dict[str, Any], sequence_number: str | None = None) -> bool:
        """Take ``record`` if it is newer than the one held for its key; return whether it was taken."""
        key = self._key(record)
        version = version_of(record, sequence_number)
        held = self.versions.get(key)
        replay = record.get("_replay")
        forced = isinstance(replay, dict) and replay.get("force_overwrite") is True
        if held is not None and not forced and version <= held:
            return False
        self.records[key] = record
        self.versions[key] = version
        return True
