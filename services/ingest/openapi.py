"""OpenAPI documentation of the ingest routes: request bodies, pixel responses and examples (kept out of api.py)."""

from __future__ import annotations

from typing import Any

from services.ingest.models import BUILTIN_TYPES, AdEventIn, BeaconIn, CustomEventIn, MeterReadIn
from services.ingest.settings import IngestSettings

# What the server enforces, said in the schema: at least one event, at most the batch limit (the default here;
# ``batch_max_events`` may set another: 413 beyond), each event of one of the three kinds.
_MAX_EVENTS = IngestSettings.model_fields["batch_max_events"].default


def _schema(model: Any, *, required_type: bool = False) -> dict[str, Any]:
    schema = model.model_json_schema()
    if required_type and "type" not in schema.get("required", []):
        schema["required"] = [*schema.get("required", []), "type"]
    return schema


def _custom_schema() -> dict[str, Any]:
    # A built-in type is validated by its own model, never as a custom event: say so, or the custom branch would
    # admit e.g. an impression without ad_id.
    schema = {**_schema(CustomEventIn), "description": "An event of a registered custom type (a schema of that name)"}
    schema["properties"] = {
        **schema["properties"],
        "type": {**schema["properties"]["type"], "not": {"enum": list(BUILTIN_TYPES)}},
    }
    return schema


_EVENT = {"anyOf": [_schema(AdEventIn), _schema(MeterReadIn, required_type=True), _custom_schema()]}


def _batch(item: dict[str, Any], name: str) -> dict[str, Any]:
    """A batch: 1 to the limit of items, each checked on its own against ``item`` once the batch is taken.

    Policy (#13): a batch is accepted per item, like Segment's API: an item that is not a valid event rejects only
    itself (its index and reason in ``results``; it is not stored), so one bad event in a client's queue never costs
    the good ones. The item schema shows what a valid item is, but the batch's own schema admits any item
    (the ``{}`` branch): a schema whose items were only valid events would call a mixed batch invalid while the
    server answers 202. A batch with no valid item is a 422 (declared with ``rule_responses`` on the route).
    """
    rejected = {"description": "any other item: rejected on its own (its index and reason in `results`)"}
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": _MAX_EVENTS,
        "description": f"{name}, each validated on its own: invalid ones are rejected in the answer, the rest taken",
        "items": {"anyOf": [item, rejected]},
    }


_EVENTS = _batch(_EVENT, "Events")
_READS = _batch(_schema(MeterReadIn), "Meter reads")
# What a schema-valid body can still be refused for (shared.openapi.rule_responses on the routes).
BATCH_RULES = (
    "a batch holds at least one valid item (else 422 with one detail per item)",
    "JSON nested no deeper than the archive stores",
)

EVENTS_EXAMPLES = {
    "single": {
        "summary": "One impression",
        "value": {"type": "impression", "event_id": "imp-1", "ad_id": "ad-7", "campaign_id": "c-1", "user_id": "u-9"},
    },
    "batch": {
        "summary": "A batch (up to the configured limit)",
        "value": {
            "events": [
                {"type": "impression", "ad_id": "ad-7", "timestamp": "2026-11-25T12:00:00Z"},
                {"type": "click", "ad_id": "ad-7", "event_id": "clk-1"},
                {"type": "meter_read", "cloud_id": "0012ab", "demand_kw": 1.25, "timestamp": "2026-11-25T12:00:06Z"},
                {"type": "signup", "properties": {"plan": "pro"}},
            ]
        },
    },
}
EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": "One event, a JSON list of events, or {'events': [...]}. Each event has a `type`: "
                    "impression, click (ad_id required), meter_read (cloud_id, demand_kw required) or a registered "
                    "schema name. Optional: event_id (dedup), timestamp/event_time, properties; unknown fields "
                    "are kept in properties.",
                    "oneOf": [
                        {"type": "object", "required": ["events"], "properties": {"events": _EVENTS}},
                        _EVENTS,
                        {**_EVENT, "type": "object", "not": {"required": ["events"]}},
                    ],
                },
                "examples": EVENTS_EXAMPLES,
            }
        },
    }
}
METER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": "{'reads': [...]} or a list; each read: cloud_id (string), timestamp, demand_kw, "
                    "summation_delivered_kwh, summation_received_kwh, raw (object), optional event_id.",
                    "oneOf": [
                        {"type": "object", "required": ["reads"], "properties": {"reads": _READS}},
                        _READS,
                    ],
                },
                "examples": {
                    "poller": {
                        "summary": "A batch from the poller",
                        "value": {
                            "reads": [
                                {
                                    "cloud_id": "00a1b2",
                                    "event_id": "00a1b2:2026-11-25T12:00:06Z",
                                    "timestamp": "2026-11-25T12:00:06Z",
                                    "demand_kw": 1.234,
                                    "summation_delivered_kwh": 10500.5,
                                    "summation_received_kwh": 0.0,
                                    "raw": {"Demand": "0x0004d2"},
                                }
                            ]
                        },
                    }
                },
            }
        },
    }
}

PIXEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/gif": {}}, "description": "1x1 transparent GIF (no-cache)"},
    204: {"description": "No Content (with response=204)"},
}
PIXEL_EXAMPLES = {
    "impression": "/v1/beacons/impression?ad_id=ad-7&campaign=c-1&placement=top&cookie_id=u-9&event_id=imp-1"
    "&ts=2026-11-25T12:00:00Z",
    "click": "/v1/beacons/click?ad_id=ad-7&cookie_id=u-9&response=204",
}


BEACON_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": BeaconIn.model_json_schema(),
                "example": {"ad_id": "ad-7", "campaign_id": "c-1", "placement": "top", "user_id": "u-9"},
            }
        },
    }
}
