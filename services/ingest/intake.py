"""Accepting events: validate, give them identity, dedup, make them durable in the spool, count them.

``Intake.accept`` is the one way in, for a beacon (pixel or JSON), a POSTed body of events or meter reads, and
the events of an analytics SDK (Snowplow, Segment) already mapped to records (``analytics.AnalyticsBatch``).
Behind it, a body of plain impressions and clicks takes the msgspec path (``plainbatch.py``), anything
else the general path that validates event by event; both build the same records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any, Literal, TypeVar, overload

import msgspec
import orjson
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from services.ingest.analytics import AnalyticsBatch
from services.ingest.dedup import Deduplicator
from services.ingest.models import (
    BUILTIN_TYPES,
    AdEventIn,
    BeaconAck,
    BeaconIn,
    CustomEventIn,
    MeterReadIn,
)
from services.ingest.plainbatch import (
    PlainAdEvent,
    PlainResult,
    days_and_counts,
    decode_plain_batch,
    encode_answer,
    encode_records,
    plain_records,
)
from services.ingest.realtime import RealtimeCounters
from services.ingest.records import (
    IpHasher,
    beacon_record,
    encode_lines,
    event_record,
    iso_z,
    plain_ad_records,
    server_event_ids,
)
from services.ingest.registry import SchemaRegistry
from services.ingest.segmentbatch import SegmentBatch
from services.ingest.spool import Day, Spool, SpoolFullError
from shared.errors import ApiError, ServiceUnavailableError, UnprocessableError
from shared.logging import get_logger

log = get_logger(__name__)
_T = TypeVar("_T")

_MODELS: dict[str, type[BaseModel]] = {"impression": AdEventIn, "click": AdEventIn, "meter_read": MeterReadIn}
_TAGS = {"impression": "ad", "click": "ad", "meter_read": "meter"}


def _event_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        event_type = value.get("type")
        return _TAGS.get(event_type, "custom") if isinstance(event_type, str) else None
    return None


# One validator call for a whole batch; pydantic picks the model from the event type.
_BATCH: TypeAdapter[list[Any]] = TypeAdapter(
    list[
        Annotated[
            Annotated[AdEventIn, Tag("ad")]
            | Annotated[MeterReadIn, Tag("meter")]
            | Annotated[CustomEventIn, Tag("custom")],
            Discriminator(_event_kind),
        ]
    ]
)


# Every record has these keys (records.py builds them all with the same fields).
_SOURCE_AND_TIME = itemgetter("source", "event_time")
_TYPE_AND_AD = itemgetter("type", "ad_id")

RETRY_REASON = "retry: an event with this event_id is being accepted by another request"
# The start of the reason given to an event whose custom type has no registered schema (a 404 when it is all).
UNKNOWN_TYPE_REASON = "type: unknown event type"


class PayloadTooLargeError(ApiError):
    """The body, or the number of events in it, is over the limit."""

    status_code = 413
    code = "payload_too_large"


@dataclass(frozen=True, slots=True)
class Beacon:
    """One impression or click beacon (from a pixel's query or a JSON body)."""

    kind: Literal["impression", "click"]
    fields: BeaconIn


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A POSTed body: one event, a list, or ``{"events": [...]}`` (``{"reads": [...]}`` for meter reads)."""

    body: bytes
    meter_reads: bool = False


@dataclass
class BatchOutcome:
    """Per-event outcome of a body (results as msgspec structs or plain dicts: cheap to encode for 500 events)."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[PlainResult] | list[dict[str, Any]]
    single: bool = False  # the body was one event object, not a list

    def encode(self) -> bytes:
        """Return the answer's JSON (the shape of ``models.IngestResponse``)."""
        return encode_answer(self.accepted, self.duplicates, self.rejected, self.results)

    def rejections(self) -> list[tuple[int, str]]:
        """Return (index, reason) of each rejected event, in order."""
        found = []
        for result in self.results:
            if isinstance(result, dict):
                index, status, reason = result["index"], result["status"], result.get("reason")
            else:
                index, status, reason = result.index, result.status, result.reason
            if status == "rejected":
                found.append((index, reason or "invalid event"))
        return found

    def lone_rejection(self) -> str | None:
        """Return why the body's one event (not a list) was rejected, or None."""
        if not self.single or not self.rejected:
            return None
        first = self.results[0]
        reason = first["reason"] if isinstance(first, dict) else first.reason
        return reason or "invalid event"


def describe_validation_error(exc: ValidationError) -> str:
    """Summarise a validation error as 'field: reason; ...'."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(part) for part in err.get("loc", ())) or "event"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class Intake:
    """The acceptance path shared by beacons, event batches and meter reads."""

    def __init__(
        self,
        *,
        spool: Spool,
        dedup: Deduplicator,
        counters: RealtimeCounters,
        hasher: IpHasher,
        registry: SchemaRegistry,
        retry_after_s: int,
        batch_max_events: int,
    ) -> None:
        self.spool = spool
        self.dedup = dedup
        self.counters = counters
        self.hasher = hasher
        self.registry = registry
        self.retry_after_s = retry_after_s
        self.batch_max_events = batch_max_events

    @overload
    async def accept(self, submission: Beacon, *, client_ip: str | None) -> BeaconAck: ...
    @overload
    async def accept(
        self, submission: EventBatch | AnalyticsBatch | SegmentBatch, *, client_ip: str | None
    ) -> BatchOutcome: ...

    async def accept(
        self, submission: Beacon | EventBatch | AnalyticsBatch | SegmentBatch, *, client_ip: str | None
    ) -> BeaconAck | BatchOutcome:
        """Accept a beacon or a body of events; accepted events are durable (fsync'd) when this returns."""
        if isinstance(submission, Beacon):
            return await self._accept_beacon(submission.kind, submission.fields, client_ip=client_ip)
        if isinstance(submission, AnalyticsBatch | SegmentBatch):
            return await self._accept_analytics(submission, client_ip=client_ip)
        if not submission.meter_reads:
            plain = decode_plain_batch(submission.body)
            if plain and len(plain) <= self.batch_max_events:
                return await self._accept_plain(plain, client_ip=client_ip)
        key = "reads" if submission.meter_reads else "events"
        items, single = as_batch(parse_json(submission.body), key, self.batch_max_events)
        default_type = "meter_read" if submission.meter_reads else None
        outcome = await self._accept_events(items, client_ip=client_ip, default_type=default_type)
        outcome.single = single
        return outcome

    async def _accept_beacon(self, event_type: str, beacon: BeaconIn, *, client_ip: str | None) -> BeaconAck:
        now = datetime.now(UTC)
        record = beacon_record(event_type, beacon, received_iso=iso_z(now), ip_hash=self.hasher(client_ip))
        event_id = record["event_id"]
        if beacon.event_id is not None:
            [claim] = await self.dedup.claim([event_id])
            if claim == "duplicate":
                return BeaconAck.model_construct(event_id=event_id, status="duplicate")
            if claim == "pending":
                raise ServiceUnavailableError(
                    "an event with this id is being accepted by another request; retry shortly",
                    details=[{"field": "event_id", "reason": "in flight"}],
                    headers={"Retry-After": "1"},
                )
        await self._store([record], claimed=[event_id] if beacon.event_id is not None else [])
        return BeaconAck.model_construct(event_id=event_id, status="accepted")

    async def _accept_events(
        self, items: list[Any], *, client_ip: str | None, default_type: str | None = None
    ) -> BatchOutcome:
        """Accept a batch of raw JSON events; a bad event rejects only itself."""
        now = datetime.now(UTC)
        received_iso = iso_z(now)
        ip_hash = self.hasher(client_ip)
        # One slot per item: its record, or None once it is rejected (the reason is in ``rejected``).
        slots: list[dict[str, Any] | None]
        if default_type is None:
            slots = plain_ad_records(items, received_iso=received_iso, ip_hash=ip_hash)
            own = [index for index, record in enumerate(slots) if record is not None and "event_id" in items[index]]
        else:
            items = [
                {**item, "type": default_type} if isinstance(item, dict) and "type" not in item else item
                for item in items
            ]
            slots, own = [None] * len(items), []
        rejected: dict[int, str] = {}
        others = [index for index, record in enumerate(slots) if record is None]
        if others:
            valid, bad = self._validate_all([items[index] for index in others], default_type)
            rejected = {others[position]: reason for position, reason in bad.items()}
            valid = [(others[position], event) for position, event in valid]
            for name in {event.type for _, event in valid if event.type not in BUILTIN_TYPES}:
                if not await self.registry.is_registered(name):
                    reason = f"{UNKNOWN_TYPE_REASON} '{name}' (register a schema with that name first)"
                    rejected.update({index: reason for index, event in valid if event.type == name})
            for index, event in valid:
                if index not in rejected:
                    slots[index] = event_record(event, received_iso=received_iso, ip_hash=ip_hash)
                    if event.event_id is not None:
                        own.append(index)
        duplicates: set[int] = set()
        if own:
            own.sort()
            duplicates, in_flight = await self._find_duplicates([(index, slots[index]["event_id"]) for index in own])
            for index in in_flight:
                rejected[index] = RETRY_REASON
                slots[index] = None
        fresh = [record for index, record in enumerate(slots) if record is not None and index not in duplicates]
        claimed = [slots[index]["event_id"] for index in own if slots[index] is not None and index not in duplicates]
        await self._store(fresh, claimed=claimed)
        return BatchOutcome(
            accepted=len(fresh),
            duplicates=len(duplicates),
            rejected=len(rejected),
            results=_results(items, slots, rejected, duplicates),
        )

    def _validate_all(self, items: list[Any], default_type: str | None) -> tuple[list[tuple[int, Any]], dict[int, str]]:
        """Validate the whole list in one call; only when something is wrong, find out item by item."""
        if default_type is None or all(isinstance(i, dict) and i.get("type") == default_type for i in items):
            try:
                return list(enumerate(_BATCH.validate_python(items))), {}
            except ValidationError:
                pass
        valid: list[tuple[int, Any]] = []
        rejected: dict[int, str] = {}
        for index, item in enumerate(items):
            event, reason = _validate_one(item, default_type)
            if event is None:
                rejected[index] = reason or "invalid event"
            else:
                valid.append((index, event))
        return valid, rejected

    async def _find_duplicates(self, client_ids: list[tuple[int, str]]) -> tuple[set[int], set[int]]:
        """Of (index, client id) pairs, return (indexes of duplicates, indexes whose id is being accepted elsewhere)."""
        duplicates: set[int] = set()
        seen: set[str] = set()
        to_claim: list[tuple[int, str]] = []
        for index, event_id in client_ids:
            if event_id in seen:
                duplicates.add(index)
                continue
            seen.add(event_id)
            to_claim.append((index, event_id))
        claims = await self.dedup.claim([event_id for _, event_id in to_claim])
        duplicates.update(index for (index, _), claim in zip(to_claim, claims, strict=True) if claim == "duplicate")
        in_flight = {index for (index, _), claim in zip(to_claim, claims, strict=True) if claim == "pending"}
        return duplicates, in_flight

    async def resubmit(self, records: list[dict[str, Any]], *, reset_event_time: bool) -> int:
        """Feed accepted records back into the spool with a new received_at (no dedup, not counted again)."""
        received_iso = iso_z(datetime.now(UTC))
        fresh = []
        for record in records:
            again = {**record, "received_at": received_iso}
            if reset_event_time:
                again["event_time"] = received_iso
            fresh.append(again)
        await self._store(fresh, claimed=[], count=False)
        return len(fresh)

    async def _accept_analytics(self, batch: AnalyticsBatch | SegmentBatch, *, client_ip: str | None) -> BatchOutcome:
        """Accept mapped SDK events (dedup by their ids) and spool the unmapped ones for the bad-rows bucket.

        Results list the mapped records in order (the SDKs only need the request's status).
        """
        batch.prepare(self.hasher(client_ip))
        records, event_ids = batch.records, batch.event_ids()
        ids = list(enumerate(event_ids))
        duplicates, in_flight = await self._find_duplicates(ids) if ids else (set(), set())
        skip = duplicates | in_flight
        fresh: list[Any] = [record for index, record in enumerate(records) if index not in skip] if skip else records
        claimed = [event_id for index, event_id in ids if index not in skip]
        if fresh or batch.unmapped:
            data, days, counts = await self._encode_or_release(batch.encode, fresh, claimed)
            await self._store_encoded(data, len(fresh) + len(batch.unmapped), days, claimed=claimed, counts=counts)
        if in_flight:
            raise ServiceUnavailableError(
                RETRY_REASON, details=[{"field": "event_id", "reason": "in flight"}], headers={"Retry-After": "1"}
            )
        status = {index: "duplicate" for index in duplicates}
        results = [
            {"index": index, "event_id": event_id, "status": status.get(index, "accepted")}
            for index, event_id in enumerate(event_ids)
        ]
        return BatchOutcome(
            accepted=len(fresh), duplicates=len(duplicates), rejected=len(batch.unmapped), results=results
        )

    async def _accept_plain(self, events: list[PlainAdEvent], *, client_ip: str | None) -> BatchOutcome:
        """Accept a batch of plain impressions and clicks (decoded by msgspec): the outcome _accept_events gives."""
        received_iso = iso_z(datetime.now(UTC))
        ids = server_event_ids(len(events))
        records = plain_records(events, ids, received_iso=received_iso, ip_hash=self.hasher(client_ip))
        own = [(index, event.event_id) for index, event in enumerate(events) if event.event_id is not None]
        duplicates, in_flight = await self._find_duplicates(own) if own else (set(), set())
        skip = duplicates | in_flight
        fresh = [record for index, record in enumerate(records) if index not in skip] if skip else records
        if fresh:
            days, counts = days_and_counts(fresh)
            claimed = [event_id for index, event_id in own if index not in skip]
            await self._store_encoded(encode_records(fresh), len(fresh), days, claimed=claimed, counts=counts)
        if not skip:
            results = [PlainResult(index, record.event_id, "accepted") for index, record in enumerate(records)]
        else:
            results = [
                PlainResult(index, record.event_id, "rejected", RETRY_REASON)
                if index in in_flight
                else PlainResult(index, record.event_id, "duplicate" if index in duplicates else "accepted")
                for index, record in enumerate(records)
            ]
        return BatchOutcome(accepted=len(fresh), duplicates=len(duplicates), rejected=len(in_flight), results=results)

    async def _store(self, records: list[dict[str, Any]], *, claimed: list[str], count: bool = True) -> None:
        if not records:
            return
        days: set[Day] = {(source, moment[:10]) for source, moment in set(map(_SOURCE_AND_TIME, records))}
        counts = Counter(map(_TYPE_AND_AD, records)) if count else None
        data = await self._encode_or_release(encode_lines, records, claimed)
        await self._store_encoded(data, len(records), days, claimed=claimed, counts=counts)

    async def _encode_or_release(self, encode: Callable[[list[Any]], _T], records: list[Any], claimed: list[str]) -> _T:
        """Encode records for the spool; when they cannot be (nested deeper than the encoder writes: the body
        check in ``nesting.py`` should have refused them already), give the claimed ids back and answer 422."""
        try:
            return encode(records)
        except (orjson.JSONEncodeError, msgspec.EncodeError, RecursionError) as exc:
            await self.dedup.release(claimed)
            raise UnprocessableError(
                "an event cannot be stored as JSON", details=[{"field": "body", "reason": str(exc)}]
            ) from exc

    async def _store_encoded(
        self,
        data: bytes,
        events: int,
        days: set[Day],
        *,
        claimed: list[str],
        counts: Counter[tuple[str, str | None]] | None,
    ) -> None:
        """Make ``events`` records (JSON lines in ``data``) durable, then confirm their ids and count them."""
        try:
            await self.spool.append(data, events, days)
        except SpoolFullError as exc:
            await self.dedup.release(claimed)
            raise ServiceUnavailableError(
                "ingest spool is full while the archive or stream is unavailable; retry later",
                details=[{"field": "spool", "reason": str(exc)}],
                headers={"Retry-After": str(self.retry_after_s)},
            ) from exc
        except Exception:
            await self.dedup.release(claimed)
            raise
        try:
            await self.dedup.confirm(claimed)
        except Exception as exc:
            # The events are durable; a lost confirmation only lets a later retry through as a duplicate.
            log.warning("dedup_confirm_failed", error=type(exc).__name__, ids=len(claimed))
        if counts:
            self.counters.add_many(counts)


def _results(
    items: list[Any], slots: list[dict[str, Any] | None], rejected: dict[int, str], duplicates: set[int]
) -> list[dict[str, Any]]:
    """Return each item's outcome, in order (plain dicts: cheap to serialise for 500 events)."""
    if not rejected and not duplicates:
        return [
            {"index": index, "event_id": record["event_id"], "status": "accepted", "reason": None}  # type: ignore[index]
            for index, record in enumerate(slots)
        ]
    results: list[dict[str, Any]] = []
    for index, record in enumerate(slots):
        if record is None:
            results.append(
                {"index": index, "event_id": _client_id(items[index]), "status": "rejected", "reason": rejected[index]}
            )
        else:
            status = "duplicate" if index in duplicates else "accepted"
            results.append({"index": index, "event_id": record["event_id"], "status": status, "reason": None})
    return results


def _client_id(item: Any) -> str | None:
    if isinstance(item, dict) and isinstance(item.get("event_id"), str):
        return item["event_id"][:128]
    return None


def _validate_one(item: Any, default_type: str | None) -> tuple[Any, str | None]:
    if not isinstance(item, dict):
        return None, "event must be a JSON object"
    event_type = item.get("type")
    if not isinstance(event_type, str):
        return None, "type: Field required (impression, click, meter_read or a registered schema name)"
    if default_type is not None and event_type != default_type:
        return None, f"type: must be '{default_type}' here"
    try:
        return _MODELS.get(event_type, CustomEventIn).model_validate(item), None
    except ValidationError as exc:
        return None, describe_validation_error(exc)


def parse_json(body: bytes) -> Any:
    """Parse a request body as JSON (422 when it is not)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]) from exc


def parse_beacon(body: bytes) -> BeaconIn:
    """Parse a JSON beacon body (422 when it is not one)."""
    try:
        return BeaconIn.model_validate(parse_json(body))
    except ValidationError as exc:
        raise UnprocessableError("invalid beacon", details=[{"field": "body", "reason": str(exc)}]) from None


def as_batch(body: Any, key: str, limit: int) -> tuple[list[Any], bool]:
    """Return (events, single) from a single object, ``{key: [...]}`` or a bare list; enforce the batch limit."""
    if isinstance(body, list):
        items, single = body, False
    elif isinstance(body, dict) and isinstance(body.get(key), list):
        items, single = body[key], False
    elif isinstance(body, dict):
        items, single = [body], True
    else:
        raise UnprocessableError(f"body must be an event object, a list, or {{'{key}': [...]}}")
    if len(items) > limit:
        raise PayloadTooLargeError(
            f"batch holds {len(items)} events; the limit is {limit}",
            details=[{"field": key, "reason": f"at most {limit} events per request"}],
        )
    if not items:
        raise UnprocessableError("batch is empty", details=[{"field": key, "reason": "at least one event"}])
    return items, single
