"""HTTP routes of the poller: the device registry, latest readings, the shard map, statistics."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse

from services.poller.models import (
    CreateResult,
    DeviceBatch,
    DeviceCreate,
    DevicePage,
    DeviceRead,
    DeviceUpdate,
    PollerStats,
    Reading,
    ShardMap,
)
from services.poller.registry import Registry
from services.poller.shardmap import shard_map
from services.poller.stats import recent_minutes
from shared.auth import Principal, require_scope
from shared.errors import ConflictError, GoneError, NotFoundError, UnprocessableError

router = APIRouter(prefix="/v1", tags=["devices"])
legacy = APIRouter(tags=["legacy"])

AdminDep = Annotated[Principal, Depends(require_scope("devices:admin"))]
ReaderDep = Annotated[Principal, Depends(require_scope("read"))]
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines")


def get_registry(request: Request) -> Registry:
    """Return the app's device registry."""
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def _parse_json_lines(body: bytes) -> list[Any]:
    items: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise UnprocessableError(
                f"line {number} is not JSON", details=[{"field": f"line {number}", "reason": str(exc)}]
            ) from exc
    if not items:
        raise UnprocessableError("no devices in the body", details=[{"field": "body", "reason": "empty"}])
    return items


async def _device_items(request: Request) -> list[Any]:
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in JSON_LINES_TYPES:
        return _parse_json_lines(body)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not JSON", details=[{"field": "body", "reason": str(exc)}]) from exc
    if isinstance(payload, dict) and "devices" in payload:
        return DeviceBatch.model_validate(payload).devices
    return payload if isinstance(payload, list) else [payload]


@router.post(
    "/devices",
    summary="Register one device or a batch",
    description=(
        'Body: one device, `{"devices": [...]}`, a JSON array, or JSON lines (`Content-Type: application/x-ndjson`;'
        " the seed's `user_email`/`user_pw` fields are accepted). Each item is validated on its own. Existing cloud"
        " ids are reported as `exists` unless `?upsert=true`. Credentials are encrypted and never returned."
    ),
    response_model=CreateResult,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": DeviceCreate.model_json_schema(),
                    "example": {"cloud_id": "002738", "owner_email": "owner@example.com", "eagle_password": "secret"},
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
)
async def create_devices(
    request: Request,
    registry: RegistryDep,
    _principal: AdminDep,
    response: Response,
    upsert: Annotated[bool, Query(description="update devices that already exist")] = False,
) -> CreateResult:
    items = await _device_items(request)
    results = await registry.create_many(items=items, upsert=upsert)
    created = sum(r.status == "created" for r in results)
    updated = sum(r.status == "updated" for r in results)
    failed = len(results) - created - updated
    if len(results) == 1 and failed:
        only = results[0]
        if only.status == "invalid":
            raise UnprocessableError("device not registered: invalid fields", details=only.errors)
        raise ConflictError(
            f"device {only.cloud_id} is already registered; PUT /v1/devices/{only.cloud_id} or POST ?upsert=true",
            details=[{"field": "cloud_id", "reason": "already registered"}],
        )
    if not created:
        response.status_code = status.HTTP_200_OK
    return CreateResult(created=created, updated=updated, failed=failed, results=results)


@router.get("/devices", summary="List devices, paged in cloud-id order", response_model=DevicePage)
async def list_devices(
    registry: RegistryDep,
    _principal: ReaderDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DevicePage:
    devices, next_cursor = await registry.page(cursor=cursor, limit=limit)
    return DevicePage(devices=devices, next_cursor=next_cursor)


@router.get("/devices/{cloud_id}", summary="Get one device (never its credentials)", response_model=DeviceRead)
async def get_device(cloud_id: str, registry: RegistryDep, _principal: ReaderDep) -> DeviceRead:
    return await registry.get(cloud_id)


@router.put(
    "/devices/{cloud_id}",
    summary="Change a device; new credentials re-enable polling after an auth failure",
    response_model=DeviceRead,
)
async def update_device(
    cloud_id: str,
    registry: RegistryDep,
    _principal: AdminDep,
    device_in: Annotated[DeviceUpdate, Body()],
) -> DeviceRead:
    return await registry.update(cloud_id=cloud_id, device_in=device_in)


@router.delete("/devices/{cloud_id}", summary="Remove a device", status_code=204, response_class=Response)
async def delete_device(cloud_id: str, registry: RegistryDep, _principal: AdminDep) -> Response:
    await registry.delete(cloud_id)
    return Response(status_code=204)


@router.get("/devices/{cloud_id}/latest", summary="The device's newest instantaneous reading", response_model=Reading)
async def latest_reading(cloud_id: str, registry: RegistryDep, _principal: ReaderDep) -> Response:
    raw = await registry.latest(cloud_id)
    if raw is None:
        await registry.get(cloud_id)  # 404 for unknown devices
        raise NotFoundError(f"device {cloud_id} has no reading yet")
    return Response(content=raw, media_type="application/json")


@router.get(
    "/shards", summary="Which replica owns which shards, and lease ages", response_model=ShardMap, tags=["shards"]
)
async def get_shards(request: Request, registry: RegistryDep, _principal: ReaderDep) -> ShardMap:
    return await shard_map(registry=registry, lease_ttl_s=request.app.state.settings.lease_ttl_s)


@router.get("/stats", summary="Devices by state, readings per minute, on-time percentage", response_model=PollerStats)
async def get_stats(
    registry: RegistryDep,
    _principal: ReaderDep,
    minutes: Annotated[int, Query(ge=1, le=180)] = 15,
) -> PollerStats:
    by_state = await registry.count_by_state()
    recent = await recent_minutes(registry.redis, keys=registry.keys, minutes=minutes)
    reads = sum(m.on_time + m.late for m in recent)
    on_time = sum(m.on_time for m in recent)
    return PollerStats(
        devices_by_state=by_state, minutes=recent, on_time_pct=round(100 * on_time / reads, 3) if reads else None
    )


_LEGACY_POINTERS = {
    "users": "/v1/devices and /v1/devices/{cloud_id} with 'Authorization: Bearer <key>' (no password in URLs)",
    "event": "/v1/devices/{cloud_id}/latest with 'Authorization: Bearer <key>'",
}


def _gone(kind: str) -> JSONResponse:
    raise GoneError(
        f"this route was retired; use {_LEGACY_POINTERS[kind]}",
        details=[{"field": "path", "reason": "retired", "replacement": _LEGACY_POINTERS[kind]}],
    )


_GONE_RESPONSES: dict[int | str, dict[str, Any]] = {410: {"description": "retired route, with a pointer"}}


@legacy.get("/api/users/", summary="Retired: see GET /v1/devices", responses=_GONE_RESPONSES)
async def legacy_list_users() -> JSONResponse:
    return _gone("users")


@legacy.get("/api/users/{cloud_id}", summary="Retired: see GET /v1/devices/{cloud_id}", responses=_GONE_RESPONSES)
async def legacy_get_user() -> JSONResponse:
    return _gone("users")


@legacy.post("/api/users/{cloud_id}", summary="Retired: see POST /v1/devices", responses=_GONE_RESPONSES)
async def legacy_post_user() -> JSONResponse:
    return _gone("users")


@legacy.get("/api/event/{cloud_id}", summary="Retired: see /v1/devices/{cloud_id}/latest", responses=_GONE_RESPONSES)
async def legacy_event() -> JSONResponse:
    return _gone("event")
