"""Records of analytics-SDK events (Snowplow, Segment): the generic types and how one record looks.

Both protocols map onto the same generic types, each with a built-in schema (transform's ``builtin_schemas``) and
so a curated table: ``track`` (a named event), ``page``, ``screen``, ``identify``, ``group``, ``alias``. A record
carries the raw-record base fields (``shared.contracts.RAW_BASE_FIELDS``; ``user_id`` is the SDK's user id and
``properties`` the event's properties or traits), then ``event_name``, ``anonymous_id``, ``protocol``
(``snowplow`` or ``segment``) and ``raw``: the payload exactly as the SDK sent it.

What cannot be mapped (an unknown event kind, a bad ``ue_px``, a message that is not an object) is still made
durable: it is spooled as an *unmapped* record (``UNMAPPED`` holds the reason) that the shipper sends to the
bad-rows bucket instead of the archive and the stream.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from services.ingest.records import EVENT_ID, encode_lines, iso_z, server_event_id
from services.ingest.spool import Day

GENERIC_TYPES = ("track", "page", "screen", "identify", "group", "alias")
UNMAPPED = "_unmapped"


@dataclass(slots=True)
class AnalyticsBatch:
    """Events of one SDK request, already mapped: records (received_at and client_ip_hash still empty) and the
    unmapped ones (spooled for the bad-rows bucket)."""

    received_iso: str
    records: list[dict[str, Any]] = field(default_factory=list)
    unmapped: list[dict[str, Any]] = field(default_factory=list)

    def prepare(self, ip_hash: str | None) -> None:
        """Stamp the received time and client hash (and the received time where the event had no time)."""
        received = self.received_iso
        for record in self.records:
            record["received_at"], record["client_ip_hash"] = received, ip_hash
            if record["event_time"] is None:
                record["event_time"] = received
        for record in self.unmapped:
            record["received_at"] = record["event_time"] = received

    def event_ids(self) -> list[str]:
        """Return the records' event ids, in order."""
        return [record["event_id"] for record in self.records]

    def encode(self, records: list[Any]) -> tuple[bytes, set[Day], Counter[tuple[str, str | None]]]:
        """Return the JSON lines of ``records`` (a subset of ``self.records``) and of the unmapped events, the
        days of ``records`` (unmapped events make no raw day: they go to bad rows) and their counts."""
        days = {(record["source"], record["event_time"][:10]) for record in records}
        counts = Counter((record["type"], record["ad_id"]) for record in records)
        return encode_lines(records + self.unmapped), days, counts


def client_event_id(value: Any, protocol: str) -> str | None:
    """Return an event id from the SDK's id: itself when it fits our id pattern, else a stable hash of it."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) <= 128 and EVENT_ID(text):
        return text
    # A stable id keeps dedup working for ids we cannot store as they are.
    return f"{protocol}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def analytics_record(
    *,
    event_id: str | None,
    event_type: str,
    event_time: str | None,
    user_id: Any,
    properties: dict[str, Any],
    event_name: str | None,
    anonymous_id: Any,
    protocol: str,
    raw: Any,
) -> dict[str, Any]:
    """Build the record of one mapped event (event_id first, as ``records.encode_lines`` needs)."""
    return {
        "event_id": event_id or server_event_id(),
        "type": event_type,
        "source": event_type,
        "event_time": event_time,
        "received_at": None,
        "client_ip_hash": None,
        "ad_id": None,
        "campaign_id": None,
        "placement": None,
        "user_id": _text(user_id, 256),
        "properties": properties,
        "event_name": _text(event_name, 256),
        "anonymous_id": _text(anonymous_id, 256),
        "protocol": protocol,
        "raw": raw,
    }


def unmapped_record(reason: str, raw: Any, *, protocol: str) -> dict[str, Any]:
    """Build the spool record of an event that cannot be mapped (the shipper sends it to bad rows)."""
    return {
        "event_id": server_event_id(),
        "type": "unmapped",
        "source": protocol,
        "event_time": None,
        "received_at": None,
        "client_ip_hash": None,
        UNMAPPED: f"{protocol}: {reason}"[:500],
        "protocol": protocol,
        "raw": raw,
    }


def _text(value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return None
    return (value if isinstance(value, str) else str(value))[:limit]


# The UTC form SDKs send (analytics-python: ``datetime.now(tzutc()).isoformat()``), turned into ours by slicing.
UTC_TEXT_PATTERN = r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|\+00:00)\Z"
_UTC_TEXT = re.compile(UTC_TEXT_PATTERN)
_VALID_DAYS: dict[str, bool] = {}


def iso_from_text(value: Any) -> str | None:
    """Return an ISO-8601 timestamp (any offset, or none: UTC) as our UTC form; None when it is not one."""
    if type(value) is not str or not value:
        return None
    if _UTC_TEXT.match(value) is not None:
        return iso_from_utc_text(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_z(moment)


def iso_from_utc_text(value: str) -> str | None:
    """Return a timestamp matching ``UTC_TEXT_PATTERN`` in our UTC form (None when its date does not exist)."""
    day = value[:10]
    valid = _VALID_DAYS.get(day)
    if valid is None:
        if len(_VALID_DAYS) > 10_000:
            _VALID_DAYS.clear()
        valid = _VALID_DAYS[day] = _is_date(day)
    if not valid:
        return None
    if len(value) == 20 or len(value) == 25:  # no fraction: "...:SSZ" or "...:SS+00:00"
        return value[:19] + ".000Z"
    # Milliseconds truncated, as ``iso_z`` formats them.
    fraction = value[20:-1] if value[-1] == "Z" else value[20:-6]
    return f"{value[:19]}.{(fraction + '000')[:3]}Z"


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def iso_from_millis(millis: int) -> str | None:
    """Return epoch milliseconds as our UTC form; None when out of range."""
    try:
        return iso_z(datetime.fromtimestamp(millis / 1000, UTC))
    except (OverflowError, OSError, ValueError):
        return None
