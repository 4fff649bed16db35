"""Turn validated incoming events into archived raw records (``shared.contracts.RawRecord``).

Every builder here writes the fields in ``RAW_BASE_FIELDS`` order (event_id first: ``encode_lines`` relies on
it), then the meter fields for meter reads; tests/ingest/test_records.py holds each builder to that order.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from services.ingest.models import EVENT_ID_PATTERN, AdEventIn, BeaconIn, CustomEventIn, EventIn, MeterReadIn
from shared.contracts import BEACON_TYPES, METER_FIELDS, RAW_BASE_FIELDS, source_of

_AD_KEYS = ("ad_id", "campaign_id", "placement", "user_id")

# Plain ad events (only these string fields) skip pydantic; anything else takes the full model.
_PLAIN_KEYS = frozenset({"type", "event_id", "ad_id", "campaign_id", "placement", "user_id"})
_SHORTEST_LIMIT = 128  # every plain field allows at least this much (user_id 256): longer values take the model
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
EVENT_ID = _EVENT_ID.fullmatch  # whether a client id fits the stored id pattern


def server_event_id() -> str:
    """Return a new unique event id (32 hex characters)."""
    return os.urandom(16).hex()


def server_event_ids(count: int) -> list[str]:
    """Return ``count`` new unique event ids (32 hex characters: 128 random bits each, one system call in all)."""
    blob = os.urandom(16 * count).hex()
    return [blob[start : start + 32] for start in range(0, 32 * count, 32)]


def iso_z(moment: datetime) -> str:
    """Format a datetime as ISO-8601 UTC with millisecond precision and a trailing Z."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


class IpHasher:
    """Keyed hash of client IPs (HMAC-SHA256), so raw IPs are never stored; small cache for hot clients."""

    def __init__(self, salt: str) -> None:
        self._key = salt.encode()
        self._cache: dict[str, str] = {}

    def __call__(self, ip: str | None) -> str | None:
        """Return the hash of ``ip`` (None when unknown)."""
        if not ip:
            return None
        hashed = self._cache.get(ip)
        if hashed is None:
            hashed = hmac.new(self._key, ip.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[ip] = hashed
        return hashed


def _base(event_type: str, event: EventIn | BeaconIn, received_iso: str, ip_hash: str | None) -> dict[str, Any]:
    event_time = event.event_time
    if event_time is not None and event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    return {
        "event_id": event.event_id or server_event_id(),
        "type": event_type,
        "source": source_of(event_type),
        "event_time": iso_z(event_time) if event_time is not None else received_iso,
        "received_at": received_iso,
        "client_ip_hash": ip_hash,
        "ad_id": None,
        "campaign_id": None,
        "placement": None,
        "user_id": None,
        "properties": {},
    }


def beacon_record(event_type: str, beacon: BeaconIn, *, received_iso: str, ip_hash: str | None) -> dict[str, Any]:
    """Build the raw record of a beacon (impression or click)."""
    record = _base(event_type, beacon, received_iso, ip_hash)
    record["ad_id"] = beacon.ad_id
    record["campaign_id"] = beacon.campaign_id
    record["placement"] = beacon.placement
    record["user_id"] = beacon.user_id
    return record


def event_record(
    event: AdEventIn | MeterReadIn | CustomEventIn, *, received_iso: str, ip_hash: str | None
) -> dict[str, Any]:
    """Build the raw record of a typed event; unknown fields land in ``properties``."""
    record = _base(event.type, event, received_iso, ip_hash)
    properties = dict(event.properties)
    if event.model_extra:
        properties.update(event.model_extra)
    record["properties"] = properties
    if isinstance(event, AdEventIn | CustomEventIn):
        for key in _AD_KEYS:
            record[key] = getattr(event, key)
    if isinstance(event, MeterReadIn):
        for key in METER_FIELDS:
            record[key] = getattr(event, key)
    return record


def plain_ad_records(items: list[Any], *, received_iso: str, ip_hash: str | None) -> list[dict[str, Any] | None]:
    """Build the records of plain impressions and clicks directly, one slot per item (None: needs the full model).

    Plain means: only type, event_id, ad_id, campaign_id, placement and user_id, all strings within the model's
    limits. For those the result equals ``event_record(AdEventIn.model_validate(item), ...)``. Batches are
    mostly plain, so this one loop (no call per event) is the hot path of ``POST /v1/events``.
    """
    records: list[dict[str, Any] | None] = []
    append = records.append
    plain_keys, limit, match = _PLAIN_KEYS, _SHORTEST_LIMIT, _EVENT_ID.fullmatch
    fresh_ids = iter(server_event_ids(len(items)))
    # Key order matters: event_id first (see encode_lines), then the fields in the order event_record gives them.
    base = dict.fromkeys(RAW_BASE_FIELDS[:-1])  # properties last, added per record
    base.update(
        source=source_of("impression"), event_time=received_iso, received_at=received_iso, client_ip_hash=ip_hash
    )
    for item in items:
        if type(item) is not dict or not item.keys() <= plain_keys:
            append(None)
            continue
        for value in item.values():
            if type(value) is not str or len(value) > limit:
                append(None)
                break
        else:
            event_id = item.get("event_id")
            if item.get("type") not in BEACON_TYPES or not item.get("ad_id"):
                append(None)
            elif event_id is None:
                append({**base, **item, "event_id": next(fresh_ids), "properties": {}})
            elif match(event_id):
                append({**base, **item, "properties": {}})
            else:
                append(None)
    return records


_BOUNDARY = b'},{"event_id":'


def encode_lines(records: list[dict[str, Any]]) -> bytes:
    """Serialise records as JSON lines (each ending in a newline).

    One ``orjson.dumps`` of the whole list costs a tenth of one call per record. Every record built here starts
    with its ``event_id`` key and a quote cannot appear unescaped inside a JSON string, so the array's
    ``},{"event_id":`` separators are exactly the record boundaries, unless a nested object happens to hold the
    same bytes: then the count differs and each record is encoded on its own.
    """
    if not records:
        return b""
    blob = orjson.dumps(records)
    leading = all(next(iter(record), None) == "event_id" for record in records)
    if leading and blob.count(_BOUNDARY) == len(records) - 1:
        return blob[1:-1].replace(_BOUNDARY, b'}\n{"event_id":') + b"\n"
    return b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in records)
