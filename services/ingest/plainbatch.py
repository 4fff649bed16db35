"""The common batch, decoded and encoded in C: plain impressions and clicks only, validated by msgspec.

Most ``POST /v1/events`` bodies hold nothing but impressions and clicks with the ad fields. For those, msgspec
decodes and validates the body straight into typed structs, and encodes the spool lines and the answer, at about
a third of the CPU of parsing to dicts, checking them in Python and serialising them again. The constraints are
those of ``AdEventIn``; anything else in the body (another type, an alias, an unknown field, a client timestamp,
a value out of bounds) fails the decode, and the request takes the general path, which validates event by event
and gives each bad event its reason. Both paths build the same records (tests/ingest/test_records.py).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from services.ingest.spool import Day
from shared.contracts import source_of

# Python's ``$`` also matches before a final newline; ``\Z`` does not (as pydantic's pattern for AdEventIn).
_EVENT_ID = r"^[A-Za-z0-9._:\-]{1,128}\Z"


class PlainAdEvent(Struct, forbid_unknown_fields=True):
    """An impression or click carrying only the ad fields (and optionally a client id)."""

    type: Literal["impression", "click"]
    ad_id: Annotated[str, Meta(min_length=1, max_length=128)]
    event_id: Annotated[str, Meta(pattern=_EVENT_ID)] | None = None
    campaign_id: Annotated[str, Meta(max_length=128)] | None = None
    placement: Annotated[str, Meta(max_length=128)] | None = None
    user_id: Annotated[str, Meta(max_length=256)] | None = None


class _Wrapped(Struct, forbid_unknown_fields=True):
    events: list[PlainAdEvent]


class PlainRecord(Struct):
    """The archived record of a plain event: the same fields, in the same order, as ``records.event_record``."""

    event_id: str
    type: str
    source: str
    event_time: str
    received_at: str
    client_ip_hash: str | None
    ad_id: str
    campaign_id: str | None
    placement: str | None
    user_id: str | None
    properties: dict[str, Any]


class PlainResult(Struct):
    """One event's outcome in the answer (the shape of ``models.EventResult``)."""

    index: int
    event_id: str | None
    status: str
    reason: str | None = None


_SOURCE = source_of("impression")  # impressions and clicks share one raw source
_DECODER = msgspec.json.Decoder(_Wrapped | list[PlainAdEvent])
_ENCODER = msgspec.json.Encoder()


def decode_plain_batch(body: bytes) -> list[PlainAdEvent] | None:
    """Return the events of a ``{"events": [...]}`` or bare-list body when every one is plain, else None."""
    try:
        decoded = _DECODER.decode(body)
    except msgspec.DecodeError:  # includes ValidationError: not JSON, or not all plain
        return None
    return decoded.events if isinstance(decoded, _Wrapped) else decoded


def plain_records(
    events: list[PlainAdEvent], ids: list[str], *, received_iso: str, ip_hash: str | None
) -> list[PlainRecord]:
    """Build the records (``ids``: a server id per event, used where the client gave none)."""
    return [
        PlainRecord(
            event.event_id or server_id,
            event.type,
            _SOURCE,
            received_iso,
            received_iso,
            ip_hash,
            event.ad_id,
            event.campaign_id,
            event.placement,
            event.user_id,
            {},
        )
        for event, server_id in zip(events, ids, strict=True)
    ]


def encode_records(records: list[PlainRecord]) -> bytes:
    """Return the records as JSON lines (each ending in a newline)."""
    return _ENCODER.encode_lines(records)


def days_and_counts(records: list[PlainRecord]) -> tuple[set[Day], Counter[tuple[str, str | None]]]:
    """Return the (source, day) pairs and the {(type, ad id): n} counts of the records."""
    days = {(_SOURCE, moment[:10]) for moment in {record.event_time for record in records}}
    return days, Counter((record.type, record.ad_id) for record in records)


def encode_answer(accepted: int, duplicates: int, rejected: int, results: list[PlainResult]) -> bytes:
    """Return the JSON answer of a batch (the shape of ``models.IngestResponse``)."""
    return _ENCODER.encode({"accepted": accepted, "duplicates": duplicates, "rejected": rejected, "results": results})
