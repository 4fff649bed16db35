"""HTTP routes of the analytics SDKs at the paths their protocols fix: Snowplow (tp2, /i) and Segment (/v1/batch...).

Both protocols are read in ``snowplow.py`` and ``segment.py`` (with what the reference clients do); the mapped
events take the one way in, ``Intake.accept``, like beacons and event batches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from services.ingest import segment, segmentbatch, snowplow
from services.ingest.api import read_body
from services.ingest.beacons import NO_CACHE, PIXEL
from services.ingest.deps import BeaconClientIp, ClientIp, IntakeDep, SettingsDep, WriteKey
from services.ingest.openapi import PIXEL_RESPONSES
from services.ingest.records import iso_z
from shared.openapi import error_responses

router = APIRouter()
# The Snowplow tracker protocol fixes these paths (outside /v1): the spec says so on the operation.
SNOWPLOW_PATH = {"x-external-protocol": "snowplow-tracker-protocol-v2"}
SEGMENT_SINGLE = ("track", "page", "screen", "identify", "group", "alias")
_TP2_EXAMPLE = {
    "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
    "data": [
        {
            "e": "pv",
            "eid": "0d4e7a9e-6b5c-4a52-9f3e-1f2a3b4c5d6e",
            "dtm": "1764072000000",
            "stm": "1764072000250",
            "url": "https://shop.example/",
            "page": "Home",
            "duid": "a1b2c3",
            "tv": "py-1.0.0",
            "p": "pc",
        },
        {
            "e": "se",
            "eid": "5f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
            "dtm": "1764072001000",
            "se_ca": "shop",
            "se_ac": "add-to-basket",
            "se_la": "sku-1",
            "se_va": "2",
        },
    ],
}
_SEGMENT_EXAMPLE = {
    "batch": [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-9",
            "properties": {"revenue": 12.5},
            "timestamp": "2026-11-25T12:00:00.000+00:00",
            "messageId": "8c3f6a1e-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        },
        {
            "type": "page",
            "name": "Home",
            "anonymousId": "a-1",
            "properties": {"url": "https://shop.example/"},
            "timestamp": "2026-11-25T12:00:01.000+00:00",
            "messageId": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        },
    ],
    "sentAt": "2026-11-25T12:00:02.000+00:00",
}


class SegmentAck(BaseModel):
    """What the Segment HTTP Tracking API answers once the messages are durable."""

    success: Literal[True] = True

    model_config = ConfigDict(json_schema_extra={"examples": [{"success": True}]})


def _json_body(description: str, example: dict[str, Any], **schema: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": description, **schema},
                    "example": example,
                }
            },
        }
    }


# What parse_payload_data requires (anything else is a 422): a payload_data schema URI and a list of events
# (events that cannot be mapped go to bad rows, so their shape is free).
_TP2_SCHEMA: dict[str, Any] = {
    "required": ["schema", "data"],
    "properties": {
        "schema": {"type": "string", "pattern": "^" + snowplow.PAYLOAD_DATA_PREFIX.replace(".", "\\.")},
        "data": {"type": "array"},
    },
}


@router.post(
    "/com.snowplowanalytics.snowplow/tp2",
    tags=["analytics SDKs"],
    summary="Snowplow tracker POST (payload_data)",
    response_class=Response,
    responses={
        200: {"description": "The events are durable", "content": {"text/plain": {"example": "ok"}}},
        **error_responses(413, 429, 503),
    },
    openapi_extra={
        **_json_body("A self-describing payload_data JSON: {schema, data: [event, ...]}", _TP2_EXAMPLE, **_TP2_SCHEMA),
        **SNOWPLOW_PATH,
    },
    description="Public like a Snowplow collector (rate-limited per client); browsers may post cross-origin with "
    "credentials from the configured `cors_origins`. Events are mapped to the generic types (see the README).",
)
async def record_snowplow_events(
    request: Request, ip: BeaconClientIp, intake: IntakeDep, settings: SettingsDep
) -> Response:
    body = await read_body(request, settings.max_body_bytes)
    batch = snowplow.map_events(snowplow.parse_payload_data(body), received=datetime.now(UTC))
    await intake.accept(batch, client_ip=ip)
    return Response(b"ok", media_type="text/plain", headers=NO_CACHE)


@router.get(
    "/i",
    tags=["analytics SDKs"],
    summary="Snowplow tracker GET (pixel)",
    response_class=Response,
    responses={**PIXEL_RESPONSES, **error_responses(429, 503)},
    openapi_extra=SNOWPLOW_PATH,
    description="One event in the query string, as the GET emitter sends it: "
    "`/i?e=se&eid=...&dtm=1764072000000&se_ca=shop&se_ac=add-to-basket`. Answers the 1x1 GIF.",
)
async def track_snowplow_pixel(request: Request, ip: BeaconClientIp, intake: IntakeDep) -> Response:
    event = dict(request.query_params)
    await intake.accept(snowplow.map_events([event], received=datetime.now(UTC)), client_ip=ip)
    return Response(content=PIXEL, media_type="image/gif", headers=NO_CACHE)


async def _segment(request: Request, intake: IntakeDep, ip: str | None, *, single: str | None) -> SegmentAck:
    limit = segment.MAX_BATCH_BYTES if single is None else segment.MAX_MESSAGE_BYTES
    body = segment.inflate(await read_body(request, limit), request.headers.get("content-encoding"), limit)
    received = datetime.now(UTC)
    batch = segmentbatch.map_batch(body, received_iso=iso_z(received)) if single is None else None
    if batch is None:
        messages = segment.parse_messages(body, single=single)
        batch = segment.map_messages(messages, received=received, check_sizes=len(body) > limit // 16)
    await intake.accept(batch, client_ip=ip)
    return SegmentAck()


@router.post(
    "/v1/batch",
    tags=["analytics SDKs"],
    summary="Segment batch (write key as HTTP Basic user)",
    response_model=SegmentAck,
    responses=error_responses(413, 503),
    openapi_extra=_json_body("{batch: [message, ...], sentAt}; at most 500 KB, gzip allowed", _SEGMENT_EXAMPLE),
    description="The Segment HTTP Tracking API: point `segment-analytics-python` (or any Segment library) at "
    "ingest with `host=<ingest url>` and an ingest:write key as the write key. Messages are deduplicated by "
    "`messageId`; ones that cannot be mapped go to bad rows.",
)
async def record_segment_batch(request: Request, intake: IntakeDep, ip: ClientIp, _: WriteKey) -> SegmentAck:
    return await _segment(request, intake, ip, single=None)


def _add_segment_single(kind: str) -> None:
    """Register ``POST /v1/<kind>``: one Segment message of that type."""

    async def record(request: Request, intake: IntakeDep, ip: ClientIp, _: WriteKey) -> SegmentAck:
        return await _segment(request, intake, ip, single=kind)

    example = {k: v for k, v in _SEGMENT_EXAMPLE["batch"][0].items() if k != "type"}  # type: ignore[index]
    router.add_api_route(
        f"/v1/{kind}",
        record,
        methods=["POST"],
        name=f"record_segment_{kind}",
        tags=["analytics SDKs"],
        summary=f"Segment {kind} (one message)",
        response_model=SegmentAck,
        responses=error_responses(413, 503),
        openapi_extra=_json_body(f"One Segment {kind} message (at most 32 KB)", example),
        description=f"As `POST /v1/batch`, for one `{kind}` message.",
    )


for _kind in SEGMENT_SINGLE:
    _add_segment_single(_kind)
