"""HTTP routes of the poller: the device registry, latest readings, the shard map, statistics.

Each handler parses, authorises and calls the registry or a service function; those raise the domain errors of
``shared.errors``, which the app maps to HTTP statuses. The original logger's routes answer 410 with a pointer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status

from services.poller import registration
from services.poller.deps import RegistryDep, SettingsDep
from services.poller.models import (
    MAX_BATCH,
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
from services.poller.shardmap import shard_map
from services.poller.stats import poller_stats
from shared.auth import DevicesAdminScope, ReadScope
from shared.errors import GoneError
from shared.openapi import error_responses, rule_responses

router = APIRouter(prefix="/v1", tags=["devices"])
# The seed logger's routes took passwords in the URL: served only to say where to go, left out of the spec.
legacy = APIRouter(include_in_schema=False)

_EXAMPLE_LINES = (
    '{"cloud_id": "002738", "user_email": "owner@example.com", "user_pw": "install-code"}\n'
    '{"cloud_id": "002739", "user_email": "other@example.com", "user_pw": "install-code-2"}\n'
)


@router.post(
    "/devices",
    summary="Register one device or a batch",
    description=(
        'Body: one device, `{"devices": [...]}`, a JSON array, or JSON lines (`Content-Type: application/x-ndjson`;'
        " the seed's `user_email`/`user_pw` fields are accepted). Each item is validated on its own. Existing cloud"
        " ids are reported as `exists` unless `?upsert=true`. Credentials are encrypted and never returned. Answers"
        " 201 when at least one device was created, else 200 (a batch reports each item's failure in `results`);"
        " a single device (a JSON object) that fails answers 422 or 409."
    ),
    response_model=CreateResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": CreateResult, "description": "Nothing created: every item existed, was updated or invalid"},
        **error_responses(409),
        # The JSON-lines form is a string in the spec: that each line is JSON cannot be said there.
        **rule_responses(422, "each non-blank line of a JSON-lines body is JSON, and there is at least one"),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            DeviceCreate.model_json_schema(),
                            DeviceBatch.model_json_schema(),
                            {"type": "array", "items": {}, "minItems": 1, "maxItems": MAX_BATCH},
                        ]
                    },
                    "example": {"cloud_id": "002738", "owner_email": "owner@example.com", "eagle_password": "secret"},
                },
                "application/x-ndjson": {"schema": {"type": "string"}, "example": _EXAMPLE_LINES},
            },
        }
    },
)
async def create_devices(
    request: Request,
    registry: RegistryDep,
    _: DevicesAdminScope,
    response: Response,
    upsert: Annotated[bool, Query(description="update devices that already exist")] = False,
) -> CreateResult:
    """Register the devices of the body, each validated on its own."""
    items, single = registration.device_items(await request.body(), request.headers.get("content-type", ""))
    result = await registration.register_devices(registry, items=items, upsert=upsert, single=single)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result


@router.get("/devices", summary="List devices, paged in cloud-id order", response_model=DevicePage)
async def list_devices(
    registry: RegistryDep,
    _: ReadScope,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DevicePage:
    """Return one page of devices and the cursor of the next."""
    devices, next_cursor = await registry.page(cursor=cursor, limit=limit)
    return DevicePage(devices=devices, next_cursor=next_cursor)


@router.get(
    "/devices/{cloud_id}",
    summary="Get one device (never its credentials)",
    response_model=DeviceRead,
    responses=error_responses(404),
)
async def get_device(cloud_id: str, registry: RegistryDep, _: ReadScope) -> DeviceRead:
    """Return one device."""
    return await registry.get(cloud_id)


@router.put(
    "/devices/{cloud_id}",
    summary="Change a device; new credentials re-enable polling after an auth failure",
    response_model=DeviceRead,
    responses=error_responses(404, 409),
    description="409 when `host` or `protocol` does not fit what the device has stored (a host for a cloud device, "
    "a local protocol without a host).",
)
async def update_device(
    cloud_id: str, registry: RegistryDep, _: DevicesAdminScope, device_in: Annotated[DeviceUpdate, Body()]
) -> DeviceRead:
    """Change the given fields of a device."""
    return await registry.update(cloud_id=cloud_id, device_in=device_in)


@router.delete(
    "/devices/{cloud_id}",
    summary="Remove a device",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_device(cloud_id: str, registry: RegistryDep, _: DevicesAdminScope) -> Response:
    """Remove a device and its latest reading."""
    await registry.delete(cloud_id)
    return Response(status_code=204)


@router.get(
    "/devices/{cloud_id}/latest",
    summary="The device's newest instantaneous reading",
    response_model=Reading,
    responses=error_responses(404),
)
async def get_latest_reading(cloud_id: str, registry: RegistryDep, _: ReadScope) -> Response:
    """Return the newest reading as stored (404 for unknown devices and before the first reading)."""
    return Response(content=await registry.latest_reading(cloud_id), media_type="application/json")


@router.get(
    "/shards", summary="Which replica owns which shards, and lease ages", response_model=ShardMap, tags=["shards"]
)
async def list_shards(registry: RegistryDep, settings: SettingsDep, _: ReadScope) -> ShardMap:
    """Return every shard's lease holder and device count, and the live replicas."""
    return await shard_map(registry=registry, lease_ttl_s=settings.lease_ttl_s)


@router.get("/stats", summary="Devices by state, readings per minute, on-time percentage", response_model=PollerStats)
async def get_stats(
    registry: RegistryDep, _: ReadScope, minutes: Annotated[int, Query(ge=1, le=180)] = 15
) -> PollerStats:
    """Return the figures the page shows."""
    return await poller_stats(registry, minutes=minutes)


def _gone(replacement: str) -> GoneError:
    return GoneError(
        f"this route was retired; use {replacement}",
        details=[{"field": "path", "reason": "retired", "replacement": replacement}],
    )


_USERS = "/v1/devices and /v1/devices/{cloud_id} with 'Authorization: Bearer <key>' (no password in URLs)"
_EVENT = "/v1/devices/{cloud_id}/latest with 'Authorization: Bearer <key>'"


@legacy.get("/api/users/")
async def list_legacy_users() -> None:
    """Retired seed route: see GET /v1/devices."""
    raise _gone(_USERS)


@legacy.get("/api/users/{cloud_id}")
async def get_legacy_user(cloud_id: str) -> None:
    """Retired seed route: see GET /v1/devices/{cloud_id}."""
    raise _gone(_USERS)


@legacy.post("/api/users/{cloud_id}")
async def post_legacy_user(cloud_id: str) -> None:
    """Retired seed route: see POST /v1/devices."""
    raise _gone(_USERS)


@legacy.get("/api/event/{cloud_id}")
async def get_legacy_event(cloud_id: str) -> None:
    """Retired seed route: see GET /v1/devices/{cloud_id}/latest."""
    raise _gone(_EVENT)
