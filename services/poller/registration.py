"""Registering devices through the API: one device, a batch, a JSON array or JSON lines, each item on its own."""

from __future__ import annotations

from typing import Any

import orjson

from services.poller.models import MAX_BATCH, CreateResult
from services.poller.registry import Registry
from shared.errors import ConflictError, UnprocessableError

JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines")


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


def device_items(body: bytes, content_type: str) -> tuple[list[Any], bool]:
    """Return the device records of a request body (JSON lines by content type, else JSON), and if it was one."""
    if content_type.split(";")[0].strip().lower() in JSON_LINES_TYPES:
        return _parse_json_lines(body), False
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnprocessableError("body is not JSON", details=[{"field": "body", "reason": str(exc)}]) from exc
    if isinstance(payload, dict) and "devices" in payload:
        payload = payload["devices"]
        if not isinstance(payload, list):
            raise UnprocessableError("devices must be a list", details=[{"field": "devices", "reason": "not a list"}])
    if not isinstance(payload, list):
        return [payload], True
    if not 1 <= len(payload) <= MAX_BATCH:
        reason = f"a batch holds 1 to {MAX_BATCH} devices"
        raise UnprocessableError(reason, details=[{"field": "devices", "reason": reason}])
    return payload, False


async def register_devices(registry: Registry, *, items: list[Any], upsert: bool, single: bool) -> CreateResult:
    """Register every item; a single device (not a batch) that fails raises (422 invalid, 409 already registered)."""
    results = await registry.create_many(items=items, upsert=upsert)
    created = sum(r.status == "created" for r in results)
    updated = sum(r.status == "updated" for r in results)
    failed = len(results) - created - updated
    if single and failed:
        only = results[0]
        if only.status == "invalid":
            raise UnprocessableError("device not registered: invalid fields", details=only.errors)
        raise ConflictError(
            f"device {only.cloud_id} is already registered; PUT /v1/devices/{only.cloud_id} or POST ?upsert=true",
            details=[{"field": "cloud_id", "reason": "already registered"}],
        )
    return CreateResult(created=created, updated=updated, failed=failed, results=results)
