"""The common Segment batch, decoded and encoded in C: messages of the generic types with the usual fields.

``analytics-python`` (and the other Segment libraries) send ``{"batch": [...]}`` bodies whose messages carry
string ids and an ISO timestamp. For those, msgspec decodes the body into structs that keep each message's
``properties`` / ``traits`` and the whole message as raw JSON bytes (``msgspec.Raw``), and encodes the records
straight from them: the message is written into the record's ``raw`` exactly as the SDK sent it, never parsed
into Python objects nor serialised again. Anything else in a batch (another type, a non-string id or name, a
message over 32 KB, a pretty-printed body, bytes that are not UTF-8) makes ``map_batch`` return None, and the
request takes the general path (``segment.map_messages``), which builds the same records (tests/ingest/
test_segment_records.py) and sets unmappable messages aside as bad rows.

The records differ from the general path's only in the bytes of ``raw``/``properties``: the SDK's own
formatting (``json.dumps`` puts a space after ``:`` and ``,``) instead of orjson's compact form; they decode to
the same values. A number too large for a double (``1e999``), which orjson refuses, is kept as sent; the
shipper then sends that record to the bad-rows bucket instead of the archive.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec import Raw, Struct

from services.ingest.analytics import client_event_id, iso_from_text, iso_from_utc_text
from services.ingest.records import server_event_ids
from services.ingest.spool import Day

PROTOCOL = "segment"
MAX_MESSAGE_BYTES = 32 * 1024
_EMPTY = Raw(b"{}")
# The raw bytes skip orjson, which writes at most 254 levels: a message with more brackets than this could nest
# deeper than a record (+1) or a bad row holding it (+2) may, so it takes the general path, whose encoder decides.
MAX_BRACKETS = 251
_NOT_OPENING = bytes(byte for byte in range(256) if byte not in b"{[\0")
_MANY_BRACKETS = re.compile(rb"[^\0]{%d}" % (MAX_BRACKETS + 1))
_NAMED = {"track": "event", "page": "name", "screen": "name"}
_SDK_STAMP = r"\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}\+00:00"
_SDK_STAMPS = re.compile(rf"{_SDK_STAMP}(?:\n{_SDK_STAMP})*")


class _Body(Struct):
    batch: list[Raw]


class _Message(Struct):
    """The fields a record takes from a message (the rest stays in the raw bytes)."""

    type: Literal["track", "page", "screen", "identify", "group", "alias"]
    messageId: str | None = None  # Segment's field names
    timestamp: str | None = None
    originalTimestamp: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    name: str | None = None
    properties: Raw = _EMPTY
    traits: Raw = _EMPTY
    groupId: Any = None
    previousId: Any = None


class SegmentRecord(Struct):
    """A mapped message's record: the fields, in the order, of ``analytics.analytics_record``."""

    event_id: str
    type: str
    source: str
    event_time: str | None
    received_at: str | None
    client_ip_hash: str | None
    ad_id: None
    campaign_id: None
    placement: None
    user_id: str | None
    properties: Any
    event_name: str | None
    anonymous_id: str | None
    protocol: str
    raw: Raw


_BODY = msgspec.json.Decoder(_Body)
_MESSAGES = msgspec.json.Decoder(list[_Message])
_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class SegmentBatch:
    """The records of one fast-path batch (received_at and client_ip_hash filled in by ``prepare``)."""

    received_iso: str
    records: list[SegmentRecord]
    unmapped: list[dict[str, Any]] = field(default_factory=list)  # always empty: such batches take the general path

    def prepare(self, ip_hash: str | None) -> None:
        """Stamp the client hash (the received time is in the records already)."""
        if ip_hash is not None:
            for record in self.records:
                record.client_ip_hash = ip_hash

    def event_ids(self) -> list[str]:
        """Return the records' event ids, in order."""
        return [record.event_id for record in self.records]

    def encode(self, records: list[Any]) -> tuple[bytes, set[Day], Counter[tuple[str, str | None]]]:
        """Return the JSON lines of ``records`` (a subset of ``self.records``), their days and their counts."""
        days = {(record.source, record.event_time[:10]) for record in records}
        return _ENCODER.encode_lines(records), days, Counter((record.type, None) for record in records)


def map_batch(body: bytes, *, received_iso: str) -> SegmentBatch | None:
    """Return the records of a ``/v1/batch`` body when every message fits the fast path, else None."""
    if b"\n" in body or (not body.isascii() and not _is_utf8(body)):
        return None  # a newline would split a spool line; bad UTF-8 is orjson's 422 on the general path
    try:
        raws = _BODY.decode(body).batch
        if not raws:
            return None
        # One decode for every message: the array of their raw bytes, joined.
        messages = _MESSAGES.decode(b"[" + b",".join(raws) + b"]")
    except msgspec.DecodeError:  # includes ValidationError: not JSON, or a message the fast path does not take
        return None
    if _too_large_or_deep(raws):
        return None
    records: list[SegmentRecord] = []
    append = records.append
    fresh_ids: list[str] | None = None
    moments = sdk_moments([message.timestamp for message in messages])
    for position, (message, raw) in enumerate(zip(messages, raws, strict=True)):
        kind = message.type
        event_id = client_event_id(message.messageId, PROTOCOL)
        if event_id is None:
            if fresh_ids is None:
                fresh_ids = server_event_ids(len(messages))
            event_id = fresh_ids[position]
        if kind == "track":
            name = message.event
            if name is None:
                return None  # a bad row: the general path sets it aside
            properties: Any = _object(message.properties)
        elif kind == "page" or kind == "screen":
            name, properties = message.name, _object(message.properties)
        elif kind == "identify":
            name, properties = None, _object(message.traits)
        elif kind == "group":
            properties = msgspec.json.decode(message.traits) if _object(message.traits) is not _EMPTY else {}
            name, properties["group_id"] = None, message.groupId
        else:  # alias
            name, properties = None, {"previous_id": message.previousId}
        if moments is not None:
            moment = moments[position]
        else:
            moment = iso_from_text(message.timestamp) or iso_from_text(message.originalTimestamp)
        user_id, anonymous_id = message.userId, message.anonymousId
        append(
            SegmentRecord(
                event_id,
                kind,
                kind,
                moment or received_iso,
                received_iso,
                None,
                None,
                None,
                None,
                user_id[:256] if user_id else None,
                properties,
                name[:256] if name else None,
                anonymous_id[:256] if anonymous_id else None,
                PROTOCOL,
                raw,
            )
        )
    return SegmentBatch(received_iso=received_iso, records=records)


def sdk_moments(stamps: list[str | None]) -> list[str] | None:
    """Return our UTC form of every timestamp when all are in the SDK's microsecond UTC form, else None.

    ``analytics-python`` stamps each message with ``datetime.now(tzutc()).isoformat()``:
    ``2026-11-25T12:00:00.123456+00:00``. One regex over the joined batch checks them all (a per-message call
    was most of the mapping's cost); any other form sends the batch to ``iso_from_text`` message by message.
    """
    try:
        joined = "\n".join(stamps)  # type: ignore[arg-type]  # a missing timestamp (None) is a TypeError
    except TypeError:
        return None
    if joined.count("\n") != len(stamps) - 1 or _SDK_STAMPS.fullmatch(joined) is None:
        return None  # (a newline inside a timestamp would pass the regex as two)
    if not all(map(_is_day, {stamp[:10] for stamp in stamps})):  # type: ignore[index]
        return None
    return [stamp[:23] + "Z" for stamp in stamps]  # type: ignore[index]  # milliseconds truncated, as iso_z


def _is_day(text: str) -> bool:
    return iso_from_utc_text(text + "T00:00:00Z") is not None


def _too_large_or_deep(raws: list[Raw]) -> bool:
    """Whether a message is over 32 KB (a bad row) or has more than ``MAX_BRACKETS`` brackets."""
    # Raw JSON never holds a NUL byte (control characters are escaped in strings), so it separates messages.
    if max(map(len, raws)) > MAX_MESSAGE_BYTES:
        return True
    joined = b"\0".join(raws)
    if joined.count(b"{") + joined.count(b"[") <= MAX_BRACKETS:
        return False
    return _MANY_BRACKETS.search(joined.translate(None, _NOT_OPENING)) is not None


def _object(raw: Raw) -> Raw:
    # A JSON object's raw bytes start with "{" (msgspec strips the whitespace around a value); else {}.
    return raw if memoryview(raw)[:1] == b"{" else _EMPTY


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
