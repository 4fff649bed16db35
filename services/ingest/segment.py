"""The Segment HTTP Tracking API, as ``segment-analytics-python`` (segment/analytics/) sends it.

What the reference client does and we follow:
- ``request.post``: ``POST <host>/v1/batch`` with ``{"batch": [<message>, ...], "sentAt": <ISO>, "writeKey":
  <key>}``, ``Content-Type: application/json`` and ``Authorization: Basic base64("<write key>:")`` (the write key
  as user name, empty password). The write key is a Headwater API key with ``ingest:write``; it is checked
  from the header before the body is read (the ``writeKey`` in the body is not used).
- ``gzip=True`` sends ``Content-Encoding: gzip``: we inflate it, bounded like a plain body.
- ``consumer.py`` keeps a batch under 500 KB (``BATCH_SIZE_LIMIT`` 475,000 leaves room for ``sentAt``) and a
  message under 32 KB (``MAX_MSG_SIZE``); we refuse a body over 500 KB with 413 (not retried by the SDK) and
  set a message over 32 KB aside as a bad row.
- Success is any 2xx: we answer ``200 {"success": true}`` once the batch is durable. 5xx and 429 are retried by
  the SDK (honouring ``Retry-After``), so a full spool answers 503 with ``Retry-After``; a re-sent batch is
  deduplicated by ``messageId`` (the SDK gives every message a UUID).
- Messages (``client.py``): ``type`` track (``event``, ``properties``), page/screen (``name``, ``category``,
  ``properties``), identify (``traits``), group (``groupId``, ``traits``), alias (``previousId``), with
  ``userId``/``anonymousId``, ``context``, ``integrations``, ``timestamp`` (ISO-8601 with offset, set by the SDK
  when the caller does not) and ``messageId``. The single-message routes ``/v1/track`` ... take one message.
- Mapping: messageId -> event_id, timestamp -> event_time (else ``originalTimestamp``, else the received time;
  ``sentAt`` is kept in ``raw`` with the whole message), userId -> user_id, event/name -> event_name,
  properties or traits -> properties (plus ``group_id``/``previous_id``); see ``analytics.py``.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import orjson

from services.ingest.analytics import (
    GENERIC_TYPES,
    AnalyticsBatch,
    analytics_record,
    client_event_id,
    iso_from_text,
    unmapped_record,
)
from services.ingest.intake import PayloadTooLargeError
from services.ingest.records import iso_z
from shared.errors import UnprocessableError

PROTOCOL = "segment"
MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
_NAMED = {"track": "event", "page": "name", "screen": "name"}
_TRAITS = ("identify", "group")


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Return the body, gunzipped when sent with ``Content-Encoding: gzip`` (413 beyond ``limit`` inflated)."""
    if not encoding or encoding.lower() == "identity":
        return body
    if encoding.lower() != "gzip":
        raise UnprocessableError(f"unsupported Content-Encoding {encoding!r}; send gzip or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise UnprocessableError("body is not valid gzip", details=[{"field": "body", "reason": str(exc)}]) from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLargeError(f"inflated body exceeds the limit of {limit} bytes")
    return data


def parse_messages(body: bytes, *, single: str | None) -> list[Any]:
    """Return the messages of a ``/v1/batch`` body, or the one message of ``/v1/<single>`` (422 when malformed)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]) from exc
    if not isinstance(document, dict):
        raise UnprocessableError("body must be a JSON object")
    if single is not None:
        return [{**document, "type": single}]
    batch = document.get("batch")
    if not isinstance(batch, list):
        raise UnprocessableError("body must be {'batch': [...]}", details=[{"field": "batch", "reason": "missing"}])
    return batch


def map_messages(messages: list[Any], *, received: datetime, check_sizes: bool) -> AnalyticsBatch:
    """Map messages to records; set aside what cannot be mapped (``check_sizes``: look for messages over 32 KB)."""
    batch = AnalyticsBatch(received_iso=iso_z(received))
    records, unmapped = batch.records, batch.unmapped
    for message in messages:
        reason = _unmappable(message, check_sizes)
        if reason is not None:
            unmapped.append(unmapped_record(reason, message, protocol=PROTOCOL))
            continue
        kind = message["type"]
        get = message.get
        if kind in _TRAITS:
            properties = get("traits")
            properties = dict(properties) if isinstance(properties, dict) else {}
            if kind == "group":
                properties["group_id"] = get("groupId")
        elif kind == "alias":
            properties = {"previous_id": get("previousId")}
        else:
            properties = get("properties")
            properties = properties if isinstance(properties, dict) else {}
        name = _NAMED.get(kind)
        records.append(
            analytics_record(
                event_id=client_event_id(get("messageId"), PROTOCOL),
                event_type=kind,
                event_time=iso_from_text(get("timestamp")) or iso_from_text(get("originalTimestamp")),
                user_id=get("userId"),
                properties=properties,
                event_name=get(name) if name else None,
                anonymous_id=get("anonymousId"),
                protocol=PROTOCOL,
                raw=message,
            )
        )
    return batch


def _unmappable(message: Any, check_sizes: bool) -> str | None:
    if not isinstance(message, dict):
        return "message is not an object"
    kind = message.get("type")
    if kind not in GENERIC_TYPES:
        return f"unknown message type {kind!r}"
    if kind == "track" and not isinstance(message.get("event"), str):
        return "track message without an event name"
    if check_sizes and len(orjson.dumps(message)) > MAX_MESSAGE_BYTES:
        return f"message is over {MAX_MESSAGE_BYTES} bytes"
    return None
