"""HTTP routes of ingest: beacons, event batches, meter reads, real-time counters, bad rows."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.ingest import badrows, openapi
from services.ingest.badrows import BadRowsSummary, ResubmitRequest, ResubmitResult, summarise_bad_rows
from services.ingest.beacons import NO_CACHE, PIXEL
from services.ingest.deps import BeaconClientIp, ClientIp, CountersDep, IntakeDep, S3Dep, SettingsDep
from services.ingest.intake import (
    RETRY_REASON,
    UNKNOWN_TYPE_REASON,
    BatchOutcome,
    Beacon,
    EventBatch,
    PayloadTooLargeError,
    parse_beacon,
)
from services.ingest.models import BeaconAck, BeaconQuery, IngestResponse, RealtimeResponse
from shared.auth import IngestWriteScope, ReadScope
from shared.errors import NotFoundError, ServiceUnavailableError, UnprocessableError
from shared.openapi import error_responses, rule_responses

# A JSON beacon is a handful of fields: refuse large bodies early, whatever max_body_bytes allows batches.
BEACON_MAX_BYTES = 64 * 1024

router = APIRouter()


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


def pixel_response(kind: Literal["gif", "204"]) -> Response:
    """Answer a pixel beacon: the GIF, or 204 No Content when asked for it (never cached)."""
    if kind == "204":
        return Response(status_code=204, headers=NO_CACHE)
    return Response(content=PIXEL, media_type="image/gif", headers=NO_CACHE)


def batch_response(outcome: BatchOutcome, key: str = "events") -> Response:
    """Answer 202 when something was taken; when nothing was, the error shape: 422 with one detail per event
    (``field`` ``<key>.<index>``), 404 when every event's type has no registered schema, or 503 when an event is
    only in flight elsewhere (retry)."""
    reason = outcome.lone_rejection()
    if reason == RETRY_REASON:
        raise ServiceUnavailableError(reason, headers={"Retry-After": "1"})
    if reason is not None and reason.startswith(UNKNOWN_TYPE_REASON):
        raise NotFoundError(reason, details=[{"field": "type", "reason": reason}])
    if reason is not None:
        raise UnprocessableError(f"invalid event: {reason}", details=[{"field": "event", "reason": reason}])
    if outcome.accepted or outcome.duplicates:
        return Response(outcome.encode(), status_code=202, media_type="application/json")
    rejections = outcome.rejections()
    if any(reason == RETRY_REASON for _, reason in rejections):
        raise ServiceUnavailableError(RETRY_REASON, headers={"Retry-After": "1"})
    details = [{"field": f"{key}.{index}", "reason": reason} for index, reason in rejections]
    # A valid event of a type nobody registered refers to a schema that does not exist: 404, not a bad body.
    if all(reason.startswith(UNKNOWN_TYPE_REASON) for _, reason in rejections):
        raise NotFoundError(f"every event has an unregistered type ({len(rejections)})", details=details)
    raise UnprocessableError(f"every event was rejected ({len(rejections)})", details=details)


def _add_beacon_routes(kind: Literal["impression", "click"]) -> None:
    """Register the pixel (GET ``track_<kind>``) and JSON (POST ``record_<kind>``) beacon routes of ``kind``."""

    async def track(ip: BeaconClientIp, query: Annotated[BeaconQuery, Query()], intake: IntakeDep) -> Response:
        await intake.accept(Beacon(kind, query), client_ip=ip)
        return pixel_response(query.response)

    async def record(request: Request, ip: BeaconClientIp, intake: IntakeDep, settings: SettingsDep) -> JSONResponse:
        body = await read_body(request, min(settings.max_body_bytes, BEACON_MAX_BYTES))
        ack = await intake.accept(Beacon(kind, parse_beacon(body)), client_ip=ip)
        return JSONResponse(ack.model_dump(), status_code=202, headers=NO_CACHE)

    path, title = f"/v1/beacons/{kind}", kind.capitalize()
    router.add_api_route(
        path,
        track,
        methods=["GET"],
        name=f"track_{kind}",
        tags=["beacons"],
        summary=f"{title} pixel",
        response_class=Response,
        responses={**openapi.PIXEL_RESPONSES, **error_responses(429, 503)},
        description=f"Public, rate-limited per client. Example: `{openapi.PIXEL_EXAMPLES[kind]}`.",
    )
    router.add_api_route(
        path,
        record,
        methods=["POST"],
        name=f"record_{kind}",
        tags=["beacons"],
        summary=f"{title} beacon (JSON)",
        status_code=202,
        response_model=BeaconAck,
        responses=error_responses(413, 429, 503),
        openapi_extra=openapi.BEACON_BODY,
        description="Public, rate-limited per client; the body is at most 64 KiB.",
    )


_add_beacon_routes("impression")
_add_beacon_routes("click")


@router.post(
    "/v1/events",
    tags=["events"],
    summary="Post one event or a batch (needs ingest:write)",
    status_code=202,
    response_model=IngestResponse,
    responses={**error_responses(404, 413, 503), **rule_responses(422, *openapi.BATCH_RULES)},
    openapi_extra=openapi.EVENTS_BODY,
    description="Accepted events are durable (fsync'd spool) when this answers 202; each event's outcome is "
    "listed by index (a bad event rejects only itself). When no event is taken the answer is an error: 422 with "
    "one detail per event (`field` `events.<index>`, `reason`), 422 for an empty batch or JSON nested deeper "
    "than the archive stores, 404 when every event has a custom type without a registered schema, 413 beyond "
    "the batch limit (`batch_max_events`, 500 by default). 503 with Retry-After when the spool is full or an "
    "event's id is being accepted by another request.",
)
async def create_events(
    request: Request, intake: IntakeDep, settings: SettingsDep, ip: ClientIp, _: IngestWriteScope
) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    return batch_response(await intake.accept(EventBatch(body), client_ip=ip))


@router.post(
    "/v1/meter-reads",
    tags=["events"],
    summary="Post a batch of meter reads (needs ingest:write)",
    status_code=202,
    response_model=IngestResponse,
    responses={**error_responses(413, 503), **rule_responses(422, *openapi.BATCH_RULES)},
    openapi_extra=openapi.METER_BODY,
    description="Answers as `POST /v1/events` does (422 details name `reads.<index>`); a read without `type` "
    "is a `meter_read`, and needs `cloud_id` and a finite `demand_kw`.",
)
async def create_meter_reads(
    request: Request, intake: IntakeDep, settings: SettingsDep, ip: ClientIp, _: IngestWriteScope
) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    return batch_response(await intake.accept(EventBatch(body, meter_reads=True), client_ip=ip), "reads")


@router.get(
    "/v1/realtime",
    tags=["realtime"],
    summary="Per-minute impressions, clicks and CTR (needs read)",
    response_model=RealtimeResponse,
)
async def get_realtime(
    counters: CountersDep, _: ReadScope, minutes: Annotated[int, Query(ge=1, le=1440)] = 60
) -> RealtimeResponse:
    return await counters.read(minutes)


@router.get(
    "/v1/bad-rows",
    tags=["bad rows"],
    summary="Count the bad rows waiting for re-submission (needs read)",
    response_model=BadRowsSummary,
)
async def list_bad_rows(s3: S3Dep, settings: SettingsDep, _: ReadScope) -> BadRowsSummary:
    return await summarise_bad_rows(s3, bucket=settings.bucket("bad-rows"))


@router.post(
    "/v1/bad-rows/resubmit",
    tags=["bad rows"],
    summary="Feed one bad-rows object back into ingest (needs ingest:write)",
    status_code=202,
    response_model=ResubmitResult,
    responses=error_responses(404, 503),
)
async def resubmit_bad_rows(
    body: ResubmitRequest, s3: S3Dep, settings: SettingsDep, intake: IntakeDep, _: IngestWriteScope
) -> ResubmitResult:
    return await badrows.resubmit(s3=s3, bucket=settings.bucket("bad-rows"), request=body, intake=intake)
