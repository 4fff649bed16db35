"""The Snowplow tracker protocol (v2), as the ``snowplow-tracker`` Python emitters and the JS tracker send it.

What the reference client does (snowplow_tracker/emitters.py, payload.py, tracker.py, events/) and we follow:
- POST emitter: ``POST /com.snowplowanalytics.snowplow/tp2`` with ``Content-Type: application/json;
  charset=utf-8`` and a self-describing body ``{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/
  jsonschema/1-0-4", "data": [<event>, ...]}``; each event a flat object of strings. Any 2xx is success
  (``Emitter.is_good_status_code``); anything else is retried, so we answer 200 only once the events are durable.
- GET emitter: one ``GET /i?<event fields>`` per event (the pixel); we answer the 1x1 GIF.
- Event fields: ``e`` the kind (``pv`` page view, ``pp`` page ping, ``se`` structured, ``ue`` self-describing,
  ``tr``/``ti`` transaction and item); ``eid`` a UUID per event (our event_id, so re-sent events are deduplicated);
  ``dtm`` device-created time and ``stm`` device-sent time (``Emitter.attach_sent_timestamp``) in epoch ms;
  ``ttm`` the true timestamp when the caller gave one; ``uid`` user id, ``duid``/``nuid`` domain/network user id;
  ``url``/``page``/``refr`` page fields; ``se_ca``/``se_ac``/``se_la``/``se_pr``/``se_va`` structured fields;
  ``ue_pr`` (JSON) or ``ue_px`` (URL-safe base64 of it, padding optional: the JS tracker strips it) carrying
  ``{"schema": "iglu:.../unstruct_event/...", "data": {"schema": <event schema>, "data": {...}}}``.
- event_time: ``ttm`` when given; else Snowplow's derived timestamp, received time minus (``stm`` - ``dtm``),
  which corrects the device clock; else ``dtm``; else the received time.
- Mapping to the generic types (``analytics.py``): ``pv`` -> page (name = ``page``), ``se`` -> track (name =
  ``se_ac``), ``ue`` -> track (name = ``vendor/name`` of the event schema), or screen for a ``screen_view``
  schema, ``pp``/``tr``/``ti`` -> track (``page_ping``, ``transaction``, ``transaction_item``). The event as sent
  is kept in ``raw``; anything else goes to bad rows.
- Browsers post cross-origin with credentials: CORS for the configured origins, with preflight (``app.py``).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

import orjson

from services.ingest.analytics import (
    AnalyticsBatch,
    analytics_record,
    client_event_id,
    iso_from_millis,
    unmapped_record,
)
from services.ingest.records import iso_z
from shared.errors import UnprocessableError

PROTOCOL = "snowplow"
PAYLOAD_DATA_PREFIX = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-"
_SCREEN_VIEW = ("/screen_view/jsonschema/",)
_STRUCTURED = {"se_ca": "category", "se_ac": "action", "se_la": "label", "se_pr": "property"}
_PAGE = {"url": "url", "page": "title", "refr": "referrer"}
_TRACK_KINDS = {"pp": "page_ping", "tr": "transaction", "ti": "transaction_item"}


def parse_payload_data(body: bytes) -> list[Any]:
    """Return the events of a tp2 body (422 when it is not a ``payload_data`` self-describing JSON)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]) from exc
    schema = document.get("schema") if isinstance(document, dict) else None
    if (
        not isinstance(schema, str)
        or not schema.startswith(PAYLOAD_DATA_PREFIX)
        or not isinstance(document.get("data"), list)
    ):
        raise UnprocessableError(
            "body must be a self-describing payload_data JSON",
            details=[{"field": "schema", "reason": f"expected {PAYLOAD_DATA_PREFIX}*"}],
        )
    return document["data"]


def map_events(events: list[Any], *, received: datetime) -> AnalyticsBatch:
    """Map tracker events (flat string objects) to records; set aside what cannot be mapped."""
    batch = AnalyticsBatch(received_iso=iso_z(received))
    for event in events:
        if not isinstance(event, dict):
            batch.unmapped.append(unmapped_record("event is not an object", event, protocol=PROTOCOL))
            continue
        try:
            batch.records.append(map_event(event, received=received))
        except ValueError as exc:
            batch.unmapped.append(unmapped_record(str(exc), event, protocol=PROTOCOL))
    return batch


def map_event(event: dict[str, Any], *, received: datetime) -> dict[str, Any]:
    """Map one tracker event to a record (ValueError when it cannot be mapped)."""
    kind = event.get("e")
    name: Any = None
    if kind == "pv":
        event_type, name = "page", event.get("page")
        properties = {key: event[field] for field, key in _PAGE.items() if field in event}
    elif kind == "se":
        event_type, name = "track", event.get("se_ac")
        properties = {key: event[field] for field, key in _STRUCTURED.items() if field in event}
        if "se_va" in event:
            properties["value"] = _number(event["se_va"])
    elif kind == "ue":
        schema, data = self_describing_event(event)
        if any(marker in schema for marker in _SCREEN_VIEW):
            event_type, name = "screen", data.get("name")
        else:
            event_type, name = "track", event_name_of(schema)
        properties = data
    elif kind in _TRACK_KINDS:
        event_type, name = "track", _TRACK_KINDS[kind]
        prefix = f"{kind}_"
        properties = {key[len(prefix) :]: value for key, value in event.items() if key.startswith(prefix)}
        properties.update({key: event[field] for field, key in _PAGE.items() if field in event})
    else:
        raise ValueError(f"unknown event kind e={kind!r}")
    return analytics_record(
        event_id=client_event_id(event.get("eid"), PROTOCOL),
        event_type=event_type,
        event_time=event_time(event, received),
        user_id=event.get("uid"),
        properties=properties,
        event_name=name,
        anonymous_id=event.get("duid") or event.get("nuid") or event.get("tnuid"),
        protocol=PROTOCOL,
        raw=event,
    )


def self_describing_event(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return (schema, data) of a ``ue`` event from ``ue_pr`` or ``ue_px`` (ValueError when malformed)."""
    if "ue_pr" in event:
        text = event["ue_pr"]
    elif "ue_px" in event:
        encoded = str(event["ue_px"])
        try:
            text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("ue_px is not URL-safe base64") from exc
    else:
        raise ValueError("ue event without ue_pr or ue_px")
    try:
        envelope = orjson.loads(text) if isinstance(text, str | bytes) else text
    except orjson.JSONDecodeError as exc:
        raise ValueError("ue_pr/ue_px is not JSON") from exc
    inner = envelope.get("data") if isinstance(envelope, dict) else None
    valid = isinstance(inner, dict) and isinstance(inner.get("schema"), str) and isinstance(inner.get("data"), dict)
    if not valid:
        raise ValueError("ue_pr/ue_px is not an unstruct_event envelope {schema, data: {schema, data}}")
    return inner["schema"], inner["data"]  # type: ignore[index]


def event_name_of(schema: str) -> str:
    """Return ``vendor/name`` of an Iglu URI (``iglu:com.acme/add_to_basket/jsonschema/1-0-0``)."""
    parts = schema.removeprefix("iglu:").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else schema


def event_time(event: dict[str, Any], received: datetime) -> str | None:
    """Return the event time: ttm, else received - (stm - dtm), else dtm; None (received time) otherwise."""
    true_time, created, sent = _millis(event.get("ttm")), _millis(event.get("dtm")), _millis(event.get("stm"))
    if true_time is not None:
        return iso_from_millis(true_time)
    if created is not None and sent is not None and sent >= created:
        return iso_z(received - timedelta(milliseconds=sent - created))
    if created is not None:
        return iso_from_millis(created)
    return None


def _millis(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _number(value: Any) -> float | str:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
