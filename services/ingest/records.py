"""Turn validated incoming events into archived raw records (contract 1 of the mesh)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
from datetime import UTC, datetime
from typing import Any

from services.ingest.models import EVENT_ID_PATTERN, AdEventIn, BeaconIn, CustomEventIn, EventIn, MeterReadIn

BEACON_TYPES = frozenset({"impression", "click"})
_AD_KEYS = ("ad_id", "campaign_id", "placement", "user_id")

# Server ids: 80 random bits per process plus a counter (32 hex characters, like a uuid4 hex, without a
# system call per event).
_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count()

# Plain ad events (only these string fields) skip pydantic; anything else takes the full model.
_PLAIN_KEYS = frozenset({"type", "event_id", "ad_id", "campaign_id", "placement", "user_id"})
_SHORTEST_LIMIT = 128  # every plain field allows at least this much (user_id 256): longer values take the model
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def server_event_id() -> str:
    """Return a new unique event id (32 hex characters)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def iso_z(moment: datetime) -> str:
    """Format a datetime as ISO-8601 UTC with millisecond precision and a trailing Z."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def source_of(event_type: str) -> str:
    """Return the raw-archive source of an event type."""
    return "beacon" if event_type in BEACON_TYPES else event_type


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


def _base(
    event_type: str, event: EventIn | BeaconIn, received_at: datetime, received_iso: str, ip_hash: str | None
) -> dict[str, Any]:
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


def beacon_record(
    event_type: str, beacon: BeaconIn, *, received_at: datetime, received_iso: str, ip_hash: str | None
) -> dict[str, Any]:
    """Build the raw record of a beacon (impression or click)."""
    record = _base(event_type, beacon, received_at, received_iso, ip_hash)
    record["ad_id"] = beacon.ad_id
    record["campaign_id"] = beacon.campaign_id
    record["placement"] = beacon.placement
    record["user_id"] = beacon.user_id
    return record


def event_record(
    event: AdEventIn | MeterReadIn | CustomEventIn, *, received_at: datetime, received_iso: str, ip_hash: str | None
) -> dict[str, Any]:
    """Build the raw record of a typed event; unknown fields land in ``properties``."""
    record = _base(event.type, event, received_at, received_iso, ip_hash)
    properties = dict(event.properties)
    if event.model_extra:
        properties.update(event.model_extra)
    record["properties"] = properties
    if isinstance(event, AdEventIn | CustomEventIn):
        for key in _AD_KEYS:
            record[key] = getattr(event, key)
    if isinstance(event, MeterReadIn):
        record["cloud_id"] = event.cloud_id
        record["demand_kw"] = event.demand_kw
        record["summation_delivered_kwh"] = event.summation_delivered_kwh
        record["summation_received_kwh"] = event.summation_received_kwh
        record["raw"] = event.raw
    return record


def plain_ad_record(item: Any, *, received_iso: str, ip_hash: str | None) -> dict[str, Any] | None:
    """Build the record of a plain impression or click directly (None when it needs the full model).

    Plain means: only type, event_id, ad_id, campaign_id, placement and user_id, all strings within the model's
    limits. For those the result equals ``event_record(AdEventIn.model_validate(item), ...)``.
    """
    if type(item) is not dict or item.get("type") not in BEACON_TYPES or not item.keys() <= _PLAIN_KEYS:
        return None
    for value in item.values():
        if type(value) is not str or len(value) > _SHORTEST_LIMIT:
            return None
    ad_id = item.get("ad_id")
    event_id = item.get("event_id")
    if not ad_id or (event_id is not None and not _EVENT_ID.match(event_id)):
        return None
    event_type = item["type"]
    return {
        "event_id": event_id or server_event_id(),
        "type": event_type,
        "source": "beacon",
        "event_time": received_iso,
        "received_at": received_iso,
        "client_ip_hash": ip_hash,
        "ad_id": ad_id,
        "campaign_id": item.get("campaign_id"),
        "placement": item.get("placement"),
        "user_id": item.get("user_id"),
        "properties": {},
    }
