"""Pydantic models of the ingest API: typed incoming events and the answers about them.

Ingest keeps no SQLModel tables of its own (API keys live in ``shared.auth``); this module is still what
``headwater migrate`` imports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

# Defined once in shared.contracts: replay validates what it writes to ingest's stream with the same patterns.
from shared.contracts import EVENT_ID_PATTERN
from shared.contracts import SOURCE_NAME_PATTERN as CUSTOM_TYPE_PATTERN

BUILTIN_TYPES = ("impression", "click", "meter_read")

# Epoch numbers as the schema bounds them (year 1 to 9999 in milliseconds; pydantic reads +-2e10 and beyond as
# milliseconds); pydantic alone would take a little past either end.
EPOCH_MIN, EPOCH_MAX = -62135596800000, 253402300799000


def _check_epoch(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, int | float) and not EPOCH_MIN <= value <= EPOCH_MAX):
        raise ValueError(f"an epoch timestamp is a number from {EPOCH_MIN} to {EPOCH_MAX}")
    return value


EventTime = Annotated[datetime | None, BeforeValidator(_check_epoch)]

_EVENT_TIME = Field(
    default=None,
    validation_alias=AliasChoices("event_time", "timestamp", "ts"),
    description="client timestamp (ISO-8601, or epoch seconds); received_at when absent",
    # The schema says what the validator takes: an ISO-8601 string or a number of epoch seconds (milliseconds
    # beyond +-2e10, as pydantic reads them), from the year 1 to the year 9999.
    json_schema_extra={
        "anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "number", "minimum": EPOCH_MIN, "maximum": EPOCH_MAX},
            {"type": "null"},
        ]
    },
)


class EventIn(BaseModel):
    """Fields every incoming event may carry; unknown fields are kept under ``properties``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN, description="client id, used for dedup")
    event_time: EventTime = _EVENT_TIME
    properties: dict[str, Any] = Field(default_factory=dict)


class AdFields(BaseModel):
    """Advertising fields shared by beacons and ad events."""

    ad_id: str = Field(min_length=1, max_length=128)
    campaign_id: str | None = Field(
        default=None, max_length=128, validation_alias=AliasChoices("campaign_id", "campaign")
    )
    placement: str | None = Field(default=None, max_length=128)
    user_id: str | None = Field(default=None, max_length=256, validation_alias=AliasChoices("user_id", "cookie_id"))


class AdEventIn(EventIn, AdFields):
    """An impression or a click."""

    type: Literal["impression", "click"]


class MeterReadIn(EventIn):
    """One meter read (from the poller)."""

    type: Literal["meter_read"] = "meter_read"
    cloud_id: str = Field(min_length=1, max_length=64, description="device id as a string (leading zeros kept)")
    # strict: a number, not a numeric string or a boolean (the schema says number).
    demand_kw: float = Field(allow_inf_nan=False, strict=True)
    summation_delivered_kwh: float | None = Field(default=None, allow_inf_nan=False, strict=True)
    summation_received_kwh: float | None = Field(default=None, allow_inf_nan=False, strict=True)
    raw: dict[str, Any] = Field(default_factory=dict)


class CustomEventIn(EventIn):
    """An event of a custom type; the type must be a registered schema name."""

    type: str = Field(pattern=CUSTOM_TYPE_PATTERN)
    ad_id: str | None = Field(default=None, max_length=128)
    campaign_id: str | None = Field(default=None, max_length=128)
    placement: str | None = Field(default=None, max_length=128)
    user_id: str | None = Field(default=None, max_length=256)


class BeaconIn(AdFields):
    """A beacon sent as JSON (POST) or as query parameters (GET)."""

    model_config = ConfigDict(populate_by_name=True)

    event_id: str | None = Field(default=None, pattern=EVENT_ID_PATTERN)
    event_time: EventTime = _EVENT_TIME


class BeaconQuery(BeaconIn):
    """Query parameters of a pixel beacon."""

    response: Literal["gif", "204"] = Field(default="gif", description="'204' answers No Content instead of a pixel")


class EventResult(BaseModel):
    """What happened to one event of a request."""

    index: int
    event_id: str | None = None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class IngestResponse(BaseModel):
    """Per-event outcome of a POST: accepted events are durable in the spool."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "accepted": 1,
                    "duplicates": 0,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "event_id": "imp-1", "status": "accepted", "reason": None},
                        {"index": 1, "event_id": None, "status": "rejected", "reason": "ad_id: Field required"},
                    ],
                }
            ]
        }
    )


class BeaconAck(BaseModel):
    """Answer to a JSON beacon."""

    event_id: str
    status: Literal["accepted", "duplicate"]

    model_config = ConfigDict(json_schema_extra={"examples": [{"event_id": "3f0c...", "status": "accepted"}]})


class Counts(BaseModel):
    """Impressions, clicks and click-through rate (clicks / impressions; 0 without impressions)."""

    impressions: int = 0
    clicks: int = 0
    ctr: float = 0.0


class MinuteCounts(Counts):
    """Counts of one minute, overall and per ad."""

    minute: datetime
    ads: dict[str, Counts] = Field(default_factory=dict)


class RealtimeResponse(BaseModel):
    """Per-minute counters of the last ``minutes`` minutes (oldest first)."""

    minutes: int
    series: list[MinuteCounts]
    totals: Counts
    by_ad: dict[str, Counts]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "minutes": 1,
                    "series": [
                        {
                            "minute": "2026-11-25T12:00:00Z",
                            "impressions": 10,
                            "clicks": 3,
                            "ctr": 0.3,
                            "ads": {"ad-1": {"impressions": 10, "clicks": 3, "ctr": 0.3}},
                        }
                    ],
                    "totals": {"impressions": 10, "clicks": 3, "ctr": 0.3},
                    "by_ad": {"ad-1": {"impressions": 10, "clicks": 3, "ctr": 0.3}},
                }
            ]
        }
    )
