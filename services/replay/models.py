"""Replay service models: the replay job table, request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from shared.contracts import SOURCE_NAME_PATTERN
from shared.messages import utc_now

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
EventView = Literal["raw_events", "live_events", "all_events"]
QueryFormat = Literal["jsonl", "arrow"]


class ReplayJob(SQLModel, table=True):
    """A replay job: what to replay where, its state and its last persisted progress."""

    __tablename__ = "replay_job"

    id: str = SQLField(primary_key=True, max_length=40)
    state: str = SQLField(default="queued", index=True, max_length=16)
    target_stream: str = SQLField(max_length=128)
    dry_run: bool = False
    request_json: str
    created_by: str = SQLField(default="", max_length=64)
    created_at: datetime = SQLField(default_factory=utc_now, index=True)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    total: int | None = None
    read: int = 0
    emitted: int = 0
    failed: int = 0
    error: str | None = None
    summary_json: str | None = None


# A source is a name of the raw archive (ingest's event type, or ``beacon``), never a path.
SourceName = Annotated[str, StringConstraints(pattern=SOURCE_NAME_PATTERN)]
# At least one: an empty list would select nothing and leave the views undefined.
Sources = Annotated[list[SourceName], Field(min_length=1, max_length=100)]


def _utc(value: datetime | None) -> datetime | None:
    # Naive times are UTC; the API never depends on the server's local zone.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def check_window(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """Return the bounds as UTC times; raise ValueError unless start < end when both are given."""
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and end <= start:
        raise ValueError("end must be after start")
    return start, end


class Selection(BaseModel):
    """A structured selection of events; every given criterion must hold."""

    model_config = ConfigDict(extra="forbid")

    view: EventView = Field("raw_events", description="archive only, the live tail only, or both de-duplicated")
    sources: Sources | None = Field(None, description="event sources (beacon, meter_read, ...): names, not paths")
    start: datetime | None = Field(None, description="event_time >= start (UTC)")
    end: datetime | None = Field(
        None, description="event_time < end (UTC); after start, at most `query_max_window_days` from it"
    )
    event_types: list[str] | None = None
    ad_ids: list[str] | None = None
    where: str | None = Field(None, description="any SQL boolean expression over the view's columns")

    @model_validator(mode="after")
    def _window(self) -> Selection:
        self.start, self.end = check_window(self.start, self.end)
        return self


class ReplayOptions(BaseModel):
    """How the selected records are emitted."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(
        "original",
        description="`original` (default): each record keeps the partition key ingest gave it on the events stream "
        "(its entity: ad_id, cloud_id, ...) and compaction is per event id; otherwise a SQL key expression that is "
        "both the compaction key and the partition key of each emitted record. `_replay.partition_key_from` says "
        "which.",
    )
    compact: StrictBool = Field(False, description="emit only the last record (by event time, sequence) per key")
    annotate: dict[str, Any] = Field(default_factory=dict, description="user fields merged under `_replay`")
    rate_limit: float | None = Field(None, gt=0, description="records per second")
    dry_run: StrictBool = False


class ReplayCreate(ReplayOptions):
    """Create a replay job from a SQL query or a structured selection."""

    query: str | None = Field(None, description="a single SELECT over the archive views")
    selection: Selection | None = None
    target_stream: str | None = Field(None, description="Kinesis stream name; default the deployment's replay stream")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selection": {
                        "sources": ["beacon"],
                        "start": "2026-11-24T00:00:00Z",
                        "end": "2026-11-25T00:00:00Z",
                    },
                    "compact": True,
                    "key": "ad_id",
                    "annotate": {"force_overwrite": True},
                    "rate_limit": 1000,
                }
            ]
        },
    )

    @model_validator(mode="after")
    def _one_form(self) -> ReplayCreate:
        if self.query is not None and self.selection is not None:
            raise ValueError("give either query or selection, not both")
        return self


class PreviewRequest(ReplayCreate):
    """Preview the first ``limit`` records a replay would emit."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "selection": {"sources": ["beacon"], "event_types": ["click"]},
                    "compact": True,
                    "key": "ad_id",
                    "limit": 5,
                }
            ]
        },
    )

    limit: int = Field(10, ge=1, le=1000)

    def replay(self) -> ReplayCreate:
        """Return the replay this preview is of (the request without ``limit``)."""
        return ReplayCreate.model_validate(self.model_dump(exclude={"limit"}))


class PreviewRecord(BaseModel):
    """One record exactly as it would be put on the stream."""

    partition_key: str
    data: dict[str, Any]


class PreviewRead(BaseModel):
    """The first records a replay would emit, in order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "records": [
                        {
                            "partition_key": "ad-1",
                            "data": {
                                "event_id": "e1",
                                "type": "click",
                                "ad_id": "ad-1",
                                "_replay": {
                                    "job_id": "preview",
                                    "original_sequence": None,
                                    "original_timestamp": "2026-11-24T10:00:00Z",
                                    "replayed_at": "2026-11-25T10:00:00Z",
                                },
                            },
                        }
                    ],
                    "count": 1,
                }
            ]
        }
    )

    records: list[PreviewRecord]
    count: int


class Progress(BaseModel):
    """Live progress of a replay job."""

    total: int | None = None
    read: int = 0
    emitted: int = 0
    failed: int = 0
    percentage: float = 0.0
    rate: float = Field(0.0, description="records emitted per second")
    eta_s: float | None = None


class ReplayRead(BaseModel):
    """A replay job as the API shows it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "rpl_3f2a9c0d1e2b4a5c6d7e",
                    "state": "running",
                    "target_stream": "hw-replay",
                    "dry_run": False,
                    "created_at": "2026-11-25T10:00:00Z",
                    "started_at": "2026-11-25T10:00:01Z",
                    "finished_at": None,
                    "request": {"selection": {"sources": ["beacon"]}, "compact": True, "key": "ad_id"},
                    "progress": {
                        "total": 10000,
                        "read": 4000,
                        "emitted": 4000,
                        "failed": 0,
                        "percentage": 40.0,
                        "rate": 2000.0,
                        "eta_s": 3.0,
                    },
                    "summary": None,
                    "error": None,
                }
            ]
        }
    )

    id: str
    state: JobState
    target_stream: str
    dry_run: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request: dict[str, Any]
    progress: Progress
    summary: dict[str, Any] | None = None
    error: str | None = None


class ReplayList(BaseModel):
    """All replay jobs, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "jobs": [
                        {
                            "id": "rpl_3f2a9c0d1e2b4a5c6d7e",
                            "state": "succeeded",
                            "target_stream": "hw-replay",
                            "dry_run": False,
                            "created_at": "2026-11-25T10:00:00Z",
                            "started_at": "2026-11-25T10:00:01Z",
                            "finished_at": "2026-11-25T10:00:06Z",
                            "request": {"selection": {"sources": ["beacon"]}},
                            "progress": {
                                "total": 10000,
                                "read": 10000,
                                "emitted": 10000,
                                "failed": 0,
                                "percentage": 100.0,
                                "rate": 2000.0,
                                "eta_s": 0.0,
                            },
                            "summary": {"selected": 10000, "emitted": 10000, "failed": 0},
                            "error": None,
                        }
                    ]
                }
            ]
        }
    )

    jobs: list[ReplayRead]


class QueryRequest(BaseModel):
    """A read-only SQL query over the archive views; optional hints prune which partitions are mirrored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"sql": "SELECT type, count(*) AS n FROM all_events GROUP BY type ORDER BY type", "format": "jsonl"}
            ]
        },
    )

    sql: str = Field(min_length=1, max_length=100_000)
    format: QueryFormat = "jsonl"
    max_rows: int | None = Field(None, ge=1)
    # Below a tenth of a second no query can answer its first row: refuse such a limit as invalid (422).
    timeout_s: float | None = Field(None, ge=0.1)
    sources: Sources | None = Field(None, description="only mirror these sources of the raw archive (names)")
    start: datetime | None = Field(None, description="only mirror raw partitions from this time")
    end: datetime | None = Field(
        None,
        description="only mirror raw partitions before this time; after start, at most `query_max_window_days` on",
    )

    @model_validator(mode="after")
    def _window(self) -> QueryRequest:
        self.start, self.end = check_window(self.start, self.end)
        return self
