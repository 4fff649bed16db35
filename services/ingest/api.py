"""HTTP routes of ingest: beacons, event batches, meter reads, real-time counters."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from services.ingest import openapi
from services.ingest.badrows import (
    BadRowsSummary,
    ResubmitRequest,
    ResubmitResult,
    move_to_resubmitted,
    originals,
    read_bad_rows,
    summarise_bad_rows,
)
from services.ingest.intake import RETRY_REASON, BatchOutcome, Intake
from services.ingest.models import BeaconAck, BeaconIn, BeaconQuery, IngestResponse, RealtimeResponse
from services.ingest.plainbatch import decode_plain_batch, encode_answer
from services.ingest.ratelimit import RateLimiter
from services.ingest.realtime import RealtimeCounters
from services.ingest.settings import IngestSettings
from shared.auth import Principal, require_scope
from shared.errors import ApiError, ServiceUnavailableError, TooManyRequestsError, UnprocessableError
from shared.http import ERROR_RESPONSES

# The classic 1x1 transparent GIF.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


class PayloadTooLargeError(ApiError):
    status_code = 413
    code = "payload_too_large"


async def get_intake(request: Request) -> Intake:
    """Return the app's intake."""
    return request.app.state.intake


async def beacon_client(request: Request) -> str | None:
    """Admit a beacon under its client's rate limit (429 beyond it); return the client IP."""
    limiter: RateLimiter = request.app.state.beacon_limiter
    ip = client_ip(request)
    if not limiter.allow(ip or "-"):
        raise TooManyRequestsError(
            "too many beacons from this client", headers={"Retry-After": str(limiter.retry_after_s())}
        )
    return ip


async def get_counters(request: Request) -> RealtimeCounters:
    """Return the app's real-time counters."""
    return request.app.state.counters


IntakeDep = Annotated[Intake, Depends(get_intake)]
BeaconClient = Annotated[str | None, Depends(beacon_client)]
CountersDep = Annotated[RealtimeCounters, Depends(get_counters)]
Writer = Annotated[Principal, Depends(require_scope("ingest:write"))]
Reader = Annotated[Principal, Depends(require_scope("read"))]


def client_ip(request: Request) -> str | None:
    """Return the caller's IP (the first X-Forwarded-For hop when configured to trust it)."""
    settings: IngestSettings = request.app.state.settings
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
    return request.client.host if request.client else None


async def read_json_body(request: Request, limit: int) -> Any:
    """Read the body up to ``limit`` bytes (413 beyond) and parse it as JSON (422 when it is not)."""
    return parse_json(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body up to ``limit`` bytes (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """Parse a request body as JSON (422 when it is not)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not valid JSON", details=[{"field": "body", "reason": str(exc)}]) from exc


def as_batch(body: Any, key: str, limit: int) -> tuple[list[Any], bool]:
    """Return (events, is_batch) from a single object, ``{key: [...]}`` or a bare list; enforce the batch limit."""
    if isinstance(body, list):
        items, batch = body, True
    elif isinstance(body, dict) and isinstance(body.get(key), list):
        items, batch = body[key], True
    elif isinstance(body, dict):
        items, batch = [body], False
    else:
        raise UnprocessableError(f"body must be an event object, a list, or {{'{key}': [...]}}")
    if len(items) > limit:
        raise PayloadTooLargeError(
            f"batch holds {len(items)} events; the limit is {limit}",
            details=[{"field": key, "reason": f"at most {limit} events per request"}],
        )
    if not items:
        raise UnprocessableError("batch is empty", details=[{"field": key, "reason": "at least one event"}])
    return items, batch


def batch_answer(result: BatchOutcome, batch: bool) -> Response:
    """Answer 202 when something was taken; a lone invalid event is a 422."""
    if not batch and result.rejected:
        reason = result.results[0]["reason"] or "invalid event"
        if reason == RETRY_REASON:
            raise ServiceUnavailableError(reason, headers={"Retry-After": "1"})
        raise UnprocessableError(f"invalid event: {reason}", details=[{"field": "event", "reason": reason}])
    status = 202 if result.accepted or result.duplicates else 422
    body = orjson.dumps(
        {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "results": result.results,
        }
    )
    return Response(body, status_code=status, media_type="application/json")


router = APIRouter()


async def _pixel(kind: str, query: BeaconQuery, intake: Intake, ip: str | None) -> Response:
    await intake.accept_beacon(kind, query, client_ip=ip)
    if query.response == "204":
        return Response(status_code=204, headers=NO_CACHE)
    return Response(content=PIXEL, media_type="image/gif", headers=NO_CACHE)


async def _json_beacon(kind: str, request: Request, intake: Intake, ip: str | None) -> JSONResponse:
    settings: IngestSettings = request.app.state.settings
    body = await read_json_body(request, min(settings.max_body_bytes, 64 * 1024))
    try:
        beacon = BeaconIn.model_validate(body)
    except ValueError as exc:
        reason = str(exc)
        raise UnprocessableError("invalid beacon", details=[{"field": "body", "reason": reason}]) from None
    event_id, status = await intake.accept_beacon(kind, beacon, client_ip=ip)
    return JSONResponse({"event_id": event_id, "status": status}, status_code=202, headers=NO_CACHE)


_PIXEL_EXAMPLES = {
    "impression": "/v1/beacons/impression?ad_id=ad-7&campaign=c-1&placement=top&cookie_id=u-9&event_id=imp-1"
    "&ts=2026-11-25T12:00:00Z",
    "click": "/v1/beacons/click?ad_id=ad-7&cookie_id=u-9&response=204",
}


def _add_beacon_routes(kind: str) -> None:
    """Register the pixel (GET) and JSON (POST) beacon routes of ``kind``."""

    async def pixel(ip: BeaconClient, query: Annotated[BeaconQuery, Query()], intake: IntakeDep) -> Response:
        return await _pixel(kind, query, intake, ip)

    async def json_beacon(request: Request, intake: IntakeDep, ip: BeaconClient) -> JSONResponse:
        return await _json_beacon(kind, request, intake, ip)

    path, title = f"/v1/beacons/{kind}", kind.capitalize()
    router.add_api_route(
        path,
        pixel,
        methods=["GET"],
        name=f"{kind}_pixel",
        tags=["beacons"],
        summary=f"{title} pixel",
        response_class=Response,
        responses=openapi.PIXEL_RESPONSES,
        description=f"Public, rate-limited per client. Example: `{_PIXEL_EXAMPLES[kind]}`.",
    )
    router.add_api_route(
        path,
        json_beacon,
        methods=["POST"],
        name=f"{kind}_json",
        tags=["beacons"],
        summary=f"{title} beacon (JSON)",
        status_code=202,
        response_model=BeaconAck,
        responses=ERROR_RESPONSES,
        openapi_extra=openapi.BEACON_BODY,
    )


for _kind in ("impression", "click"):
    _add_beacon_routes(_kind)


@router.post(
    "/v1/events",
    tags=["events"],
    summary="Post one event or a batch (needs ingest:write)",
    status_code=202,
    response_model=IngestResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=openapi.EVENTS_BODY,
    description="Accepted events are durable (fsync'd spool) when this answers 202; each event's outcome is "
    "listed by index. 503 with Retry-After when the spool is full.",
)
async def post_events(request: Request, intake: IntakeDep, _: Writer) -> Response:
    settings: IngestSettings = request.app.state.settings
    raw = await read_body(request, settings.max_body_bytes)
    plain = decode_plain_batch(raw)
    if plain and len(plain) <= settings.batch_max_events:
        # The common batch (impressions and clicks only): decoded, validated and answered by msgspec.
        outcome = await intake.accept_plain(plain, client_ip=client_ip(request))
        status = 202 if outcome.accepted or outcome.duplicates else 422
        body = encode_answer(outcome.accepted, outcome.duplicates, outcome.rejected, outcome.results)
        return Response(body, status_code=status, media_type="application/json")
    items, batch = as_batch(parse_json(raw), "events", settings.batch_max_events)
    result = await intake.accept_events(items, client_ip=client_ip(request))
    return batch_answer(result, batch)


@router.post(
    "/v1/meter-reads",
    tags=["events"],
    summary="Post a batch of meter reads (needs ingest:write)",
    status_code=202,
    response_model=IngestResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=openapi.METER_BODY,
)
async def post_meter_reads(request: Request, intake: IntakeDep, _: Writer) -> Response:
    settings: IngestSettings = request.app.state.settings
    body = await read_json_body(request, settings.max_body_bytes)
    items, batch = as_batch(body, "reads", settings.batch_max_events)
    result = await intake.accept_events(items, client_ip=client_ip(request), default_type="meter_read")
    return batch_answer(result, batch)


@router.get(
    "/v1/realtime",
    tags=["realtime"],
    summary="Per-minute impressions, clicks and CTR (needs read)",
    response_model=RealtimeResponse,
    responses=ERROR_RESPONSES,
)
async def realtime(
    counters: CountersDep, _: Reader, minutes: Annotated[int, Query(ge=1, le=1440)] = 60
) -> RealtimeResponse:
    return await counters.read(minutes)


@router.get(
    "/v1/bad-rows",
    tags=["bad rows"],
    summary="Count the bad rows waiting for re-submission (needs read)",
    response_model=BadRowsSummary,
    responses=ERROR_RESPONSES,
)
async def list_bad_rows(request: Request, _: Reader) -> BadRowsSummary:
    s3 = await request.app.state.aws.get("s3")
    return await summarise_bad_rows(s3, bucket=request.app.state.settings.bucket("bad-rows"))


@router.post(
    "/v1/bad-rows/resubmit",
    tags=["bad rows"],
    summary="Feed one bad-rows object back into ingest (needs ingest:write)",
    status_code=202,
    response_model=ResubmitResult,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "key": "ingest/dt=2026-11-25/1795609425766c2c968-00000003-n2.jsonl.gz",
                        "reset_event_time": True,
                    }
                }
            }
        }
    },
)
async def resubmit_bad_rows(request: Request, body: ResubmitRequest, intake: IntakeDep, _: Writer) -> ResubmitResult:
    s3 = await request.app.state.aws.get("s3")
    bucket = request.app.state.settings.bucket("bad-rows")
    records = originals(await read_bad_rows(s3, bucket=bucket, key=body.key))
    count = await intake.resubmit(records, reset_event_time=body.reset_event_time)
    moved_to = await move_to_resubmitted(s3, bucket=bucket, key=body.key)
    return ResubmitResult(key=body.key, resubmitted=count, moved_to=moved_to)
