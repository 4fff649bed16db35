"""Transform's tables (schema registry, transform runs) and its API models (schemas, transforms, chains)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import UniqueConstraint
from sqlmodel import Field as SqlField
from sqlmodel import SQLModel

from shared.messages import utc_now
from shared.redaction import redact_account_ids
from shared.schemas import MAX_VERSION

Engine = Literal["local", "emr", "glue"]


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: Any) -> Any:
    # Pydantic reads a number as a Unix time ("end": 0 is 1970-01-01): the spec says a YYYY-MM-DD string, so only that.
    if isinstance(value, int | float) or (isinstance(value, str) and not _ISO_DATE.match(value)):
        raise ValueError("a date is YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]


def _whole_number_only(value: Any) -> Any:
    # JSON Schema's "integer" includes 5.0 but not "5" or true: take exactly those (pydantic's strict mode refuses 5.0).
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("an integer is expected")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_whole_number_only)]
# The bound sits on the int, before the validator: on the Optional (``JsonInt | None = Field(ge=0)``) pydantic wrote
# it as unknown keywords ("ge": 0), so the spec did not state it and schemathesis sent hour 300 as a valid request.
Hour = Annotated[int, Field(ge=0, le=23), BeforeValidator(_whole_number_only)]
# RFC 3339 date-time (the spec's format): pydantic alone also reads "0.5" as a Unix time.
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")


def _iso_datetime_only(value: Any) -> Any:
    if isinstance(value, int | float) or (isinstance(value, str) and not _ISO_DATETIME.match(value)):
        raise ValueError("a time is an RFC 3339 date-time, e.g. 2026-11-24T00:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime_only)]


class SchemaVersion(SQLModel, table=True):
    """One immutable registered schema version (its YAML, as uploaded)."""

    __tablename__ = "transform_schema"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_transform_schema_name_version"),)

    id: int | None = SqlField(default=None, primary_key=True)
    name: str = SqlField(index=True, max_length=127)
    version: int
    yaml_text: str
    sha256: str = SqlField(max_length=64)
    created_at: datetime = SqlField(default_factory=utc_now)


class TransformRun(SQLModel, table=True):
    """One transform of one partition (a dt, optionally one hour) by one engine."""

    __tablename__ = "transform_run"

    id: str = SqlField(primary_key=True, max_length=64, description="the transform id")
    request_id: str | None = SqlField(default=None, index=True, max_length=64)
    job_id: int | None = None
    loader_run_id: int | None = None
    table_name: str = SqlField(index=True, max_length=127)
    schema_version: int
    dt: date = SqlField(index=True)
    hour: int | None = None
    engine: str = SqlField(default="local", max_length=16)
    source_bucket: str
    source_prefix: str
    state: str = SqlField(default="queued", index=True, max_length=16)
    attempts: int = 0
    rows_in: int | None = None
    rows_out: int | None = None
    rows_bad: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    duration_s: float | None = None
    engine_run_id: str | None = None
    engine_state: str | None = None
    engine_states: str = SqlField(default="", description="every engine state seen while polling, comma-separated")
    log_url: str | None = None
    manifest_key: str | None = None
    bad_rows_key: str | None = None
    advertising_view_key: str | None = None
    error: str | None = None
    outcome_sent: bool = SqlField(default=False, description="the LoadRequest/TransformFailed was sent")
    created_at: datetime = SqlField(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None


# -- API models -----------------------------------------------------------------------------------


SCHEMA_SUMMARY_EXAMPLE: dict[str, Any] = {
    "name": "ad_events",
    "version": 1,
    "sha256": "9f2c...",
    "created_at": "2026-11-25T12:00:00Z",
    "s3_uri": "s3://hw-curated/_schemas/ad_events/v1.yaml",
}


class SchemaSummary(BaseModel):
    """A registered schema version, without its columns."""

    name: str
    version: int
    sha256: str
    created_at: datetime
    s3_uri: str

    model_config = ConfigDict(json_schema_extra={"examples": [SCHEMA_SUMMARY_EXAMPLE]})


class SchemaRead(SchemaSummary):
    """A registered schema version with its parsed definition and YAML."""

    definition: dict[str, Any]
    yaml: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "clicks",
                    "version": 1,
                    "sha256": "9f2c...",
                    "created_at": "2026-11-25T12:00:00Z",
                    "s3_uri": "s3://hw-curated/_schemas/clicks/v1.yaml",
                    "definition": {
                        "name": "clicks",
                        "version": 1,
                        "columns": [{"name": "event_id", "source": "event_id", "type": "varchar(64)"}],
                        "partition_column": "dt",
                    },
                    "yaml": "name: clicks\nversion: 1\ncolumns:\n  - {name: event_id, type: varchar(64)}\n",
                }
            ]
        }
    )


class SchemaList(BaseModel):
    """Registered schema versions, newest first per name."""

    items: list[SchemaSummary]

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [SCHEMA_SUMMARY_EXAMPLE]}]})


MAX_RANGE_DAYS = 366


class TransformCreate(BaseModel):
    """Ask for a transform of one date (`dt`) or of a range of dates (`start` and `end`, not both forms).

    `end` is on or after `start`, at most 366 days later; `source_path` starts with `s3://bucket/`.
    """

    table: str = Field(examples=["ad_events"])
    version: JsonInt = Field(ge=1, le=MAX_VERSION, examples=[1])
    source_path: str = Field(
        pattern=r"^s3://[^/]*/",
        description="raw partition location; {dt} (YYYY-MM-DD) is replaced per date, e.g. s3://hw-raw/beacon/dt={dt}/",
        examples=["s3://hw-raw/beacon/dt={dt}/"],
    )
    dt: IsoDate | None = Field(default=None, description="one date")
    start: IsoDate | None = Field(default=None, description="first date of a range (inclusive)")
    end: IsoDate | None = Field(default=None, description="last date of a range (inclusive)")
    hour: Hour | None = Field(default=None, description="only this hour of each date")
    engine: Engine = "local"

    model_config = ConfigDict(
        json_schema_extra={
            # The rule _one_date_or_range enforces (a null is the same as an absent field).
            "oneOf": [
                {"required": ["dt"], "properties": {"dt": {"type": "string"}}},
                {"required": ["start", "end"], "properties": {"start": {"type": "string"}, "end": {"type": "string"}}},
            ],
            "examples": [
                {"table": "ad_events", "version": 1, "source_path": "s3://hw-raw/beacon/dt={dt}/", "dt": "2026-11-24"},
                {
                    "table": "ad_events",
                    "version": 1,
                    "source_path": "s3://hw-raw/beacon/dt={dt}/",
                    "start": "2026-11-20",
                    "end": "2026-11-24",
                    "engine": "emr",
                },
            ],
        }
    )

    @model_validator(mode="after")
    def _one_date_or_range(self) -> TransformCreate:
        if (self.dt is None) == (self.start is None or self.end is None):
            raise ValueError("give either dt, or start and end")
        if self.start and self.end and (self.end < self.start or (self.end - self.start).days > MAX_RANGE_DAYS):
            raise ValueError(f"end must be on or after start, at most {MAX_RANGE_DAYS} days later")
        if not self.source_path.startswith("s3://") or "/" not in self.source_path[5:]:
            raise ValueError("source_path must look like s3://bucket/prefix/")
        return self

    def dates(self) -> list[date]:
        """Return the dates this request covers."""
        if self.dt is not None:
            return [self.dt]
        assert self.start is not None and self.end is not None
        return [date.fromordinal(d) for d in range(self.start.toordinal(), self.end.toordinal() + 1)]


TRANSFORM_READ_EXAMPLE: dict[str, Any] = {
    "id": "4f1c2a9e0b7d4e21a3c5d6e7f8091a2b",
    "table": "ad_events",
    "version": 1,
    "dt": "2026-11-24",
    "hour": None,
    "engine": "local",
    "state": "succeeded",
    "source": "s3://hw-raw/beacon/dt=2026-11-24/",
    "attempts": 1,
    "rows_in": 1000,
    "rows_out": 998,
    "rows_bad": 2,
    "bytes_in": 420000,
    "bytes_out": 61000,
    "duration_s": 1.2,
    "engine_run_id": None,
    "engine_state": None,
    "engine_states": [],
    "log_url": None,
    "manifest_url": "s3://hw-curated/ad_events/v1/dt=2026-11-24/_manifest.json",
    "bad_rows_url": "s3://hw-bad-rows/ad_events/dt=2026-11-24/4f1c2a9e0b7d4e21a3c5d6e7f8091a2b.jsonl.gz",
    "error": None,
    "created_at": "2026-11-25T12:00:00Z",
    "started_at": "2026-11-25T12:00:01Z",
    "finished_at": "2026-11-25T12:00:02Z",
}


class TransformRead(BaseModel):
    """A transform run's state and figures."""

    id: str
    table: str
    version: int
    dt: date
    hour: int | None
    engine: str
    state: str
    source: str
    attempts: int
    rows_in: int | None
    rows_out: int | None
    rows_bad: int | None
    bytes_in: int | None
    bytes_out: int | None
    duration_s: float | None
    engine_run_id: str | None
    engine_state: str | None
    engine_states: list[str] = Field(default_factory=list, description="engine states seen while polling, in order")
    log_url: str | None
    manifest_url: str | None
    bad_rows_url: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    model_config = ConfigDict(json_schema_extra={"examples": [TRANSFORM_READ_EXAMPLE]})

    @field_validator("error", "log_url")
    @classmethod
    def _redact(cls, value: str | None) -> str | None:
        return redact_account_ids(value)  # errors and EMR's default log bucket name the AWS account


class TransformList(BaseModel):
    """Transform runs, newest first."""

    items: list[TransformRead]

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [TRANSFORM_READ_EXAMPLE]}]})


class TransformLogs(BaseModel):
    """The tail of a run's engine logs."""

    id: str
    engine: str
    log_url: str | None
    text: str = Field(description="last 64 kB of the engine's logs; empty for the local engine or before any exist")

    @field_validator("log_url", "text")
    @classmethod
    def _redact(cls, value: str | None) -> str | None:
        return redact_account_ids(value)

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "4f1c2a9e0b7d4e21a3c5d6e7f8091a2b",
                    "engine": "emr",
                    "log_url": "s3://hw-logs/emr/j-2AXXXXXXGAPLF/steps/s-1XXXXXXXXXXA/",
                    "text": "== stderr.gz\n24/11/25 12:00:03 INFO SparkContext: Running Spark version 3.5.2\n",
                }
            ]
        }
    )


# -- Task chains ----------------------------------------------------------------------------------


class ChainIndex(BaseModel):
    """Every chain type, its chains and their tasks."""

    types: list[dict[str, Any]]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "types": [
                        {
                            "type": "testchains",
                            "chains": [
                                {
                                    "name": "hello",
                                    "doc": "Hello chain",
                                    "tasks": [
                                        {
                                            "name": "ShoutTask",
                                            "output": "out.json",
                                            "url": "/v1/chains/testchains/hello/ShoutTask",
                                            "params_schema": {},
                                        }
                                    ],
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    )


TARGET_EXAMPLE = "chains/testchains/hello/ShoutTask/1f3870be274f6c49b3e31a0c6728957f/"
CHAIN_TASK_EXAMPLE: dict[str, Any] = {
    "target": TARGET_EXAMPLE,
    "task": "ShoutTask",
    "params": {"name": "ada", "fail": False},
    "state": "FAILED",
    "attempts": 2,
    "started_at": "2026-11-25T12:00:01+00:00",
    "finished_at": "2026-11-25T12:00:02+00:00",
    "duration_s": 0.8,
    "error": "RuntimeError: asked to fail",
    "cause": None,
}


class ChainSubmitted(BaseModel):
    """A submitted run: its root target, the root's state and where to follow it."""

    run_id: str
    target: str
    job_status: str = Field(description="the root's state: WAITING, QUEUED, RUNNING, RETRYABLE, DONE or FAILED")
    status_url: str = Field(description="absolute URL of the run's status")
    expires_in: int = Field(description="seconds a resource_url given by the status stays valid")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "5d1c0f3a9b2e4c67",
                    "target": TARGET_EXAMPLE,
                    "job_status": "WAITING",
                    "status_url": f"https://transform.example.com/v1/chains/status?chain={TARGET_EXAMPLE}",
                    "expires_in": 600,
                }
            ]
        }
    )


class ChainTask(BaseModel):
    """One task of a chain: its state, attempts, timings and error (``cause`` names the failed requirement)."""

    target: str
    task: str
    params: dict[str, Any]
    state: str = Field(description="PENDING, WAITING, QUEUED, RUNNING, RETRYABLE, DONE or FAILED")
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration_s: float | None
    error: str | None
    cause: str | None = Field(description="the failed requirement that failed this task, if that is why")

    model_config = ConfigDict(json_schema_extra={"examples": [CHAIN_TASK_EXAMPLE]})


class ChainTaskDetail(ChainTask):
    """One task with its log (``log.txt``: what it printed and logged) and the full traceback of its failure."""

    log: str
    traceback: str | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **CHAIN_TASK_EXAMPLE,
                    "log": "2026-11-25T12:00:01+00:00 attempt 2 of chains/...\nTraceback (most recent call last):\n",
                    "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: asked to fail\n",
                }
            ]
        }
    )


class ChainStatus(BaseModel):
    """A root's state, each task's state, the DAG, and its output's presigned URL once done."""

    run_id: str | None
    target: str
    job_status: str = Field(description="the root's state: PENDING, WAITING, QUEUED, RUNNING, RETRYABLE, DONE, FAILED")
    error: str | None
    resource_url: str | None
    expires_in: int | None
    tasks: list[ChainTask] = Field(description="every task below the root, the root first")
    dag: dict[str, Any] = Field(description="nodes (the tasks) and edges (from requirement to task)")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "5d1c0f3a9b2e4c67",
                    "target": TARGET_EXAMPLE,
                    "job_status": "DONE",
                    "error": None,
                    "resource_url": "https://...",
                    "expires_in": 600,
                    "tasks": [{**CHAIN_TASK_EXAMPLE, "state": "DONE", "error": None}],
                    "dag": {"root": TARGET_EXAMPLE, "nodes": [], "edges": []},
                }
            ]
        }
    )


CHAIN_RUN_EXAMPLE: dict[str, Any] = {
    "run_id": "5d1c0f3a9b2e4c67",
    "type": "testchains",
    "chain": "hello",
    "task": "ShoutTask",
    "params": {"name": "ada", "fail": False},
    "target": TARGET_EXAMPLE,
    "state": "FAILED",
    "error": "RuntimeError: asked to fail",
    "created_at": "2026-11-25T12:00:00+00:00",
    "finished_at": "2026-11-25T12:00:02+00:00",
}


class ChainRun(BaseModel):
    """A submitted run of a root task (its state is the root's: RUNNING until DONE or FAILED)."""

    run_id: str
    type: str
    chain: str
    task: str
    params: dict[str, Any]
    target: str
    state: str
    error: str | None
    created_at: str
    finished_at: str | None

    model_config = ConfigDict(json_schema_extra={"examples": [CHAIN_RUN_EXAMPLE]})


class ChainRunList(BaseModel):
    """Recent runs across all chains, newest first."""

    items: list[ChainRun]

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [CHAIN_RUN_EXAMPLE]}]})


class ChainRetried(BaseModel):
    """A failed task started again, with the dependents that had failed because of it."""

    target: str
    reset: list[str] = Field(description="the targets set back to run: the task and its failed dependents")
    status_url: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "target": TARGET_EXAMPLE,
                    "reset": [TARGET_EXAMPLE],
                    "status_url": f"https://transform.example.com/v1/chains/status?chain={TARGET_EXAMPLE}",
                }
            ]
        }
    )
