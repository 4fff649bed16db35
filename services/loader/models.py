"""Loader models: the Job and JobRun tables (metadata DB), run history, and the API's request/response models."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic import Field as PydanticField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from services.loader.templates import SourceTemplate, TemplateError
from shared.redaction import redact_account_ids

TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The spec shows the rule _valid_emails enforces on each address (the error names the field ``emails``).
EMAILS_SCHEMA: dict[str, Any] = {"items": {"type": "string", "pattern": EMAIL.pattern, "maxLength": 254}}
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date_only(value: Any) -> Any:
    # Pydantic also reads a number as a Unix time ("0" is 1970-01-01): the spec says YYYY-MM-DD, so only that.
    if isinstance(value, str) and not ISO_DATE.match(value):
        raise ValueError("a date is YYYY-MM-DD")
    if isinstance(value, int | float):
        raise ValueError("a date is YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_only)]
# Ids and versions are INTEGER columns (32-bit on Postgres): anything larger can name nothing.
ID_MAX = 2**31 - 1
RETENTION_DAYS_MAX = 36_500  # a hundred years; more overflows date arithmetic
# A job name goes into mail headers: no control characters or line separators, not blank.
_NAME_CHAR = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"
JOB_NAME_PATTERN = rf"^{_NAME_CHAR}*[^\s\x00-\x1f\x7f-\x9f\u2028\u2029]{_NAME_CHAR}*$"
Warehouse = Literal["duckdb", "postgres", "redshift"]
Engine = Literal["local", "emr", "glue"]


def utc_now() -> datetime:
    """Return now, timezone-aware UTC (sqlmodel stores UTC and returns aware datetimes)."""
    return datetime.now(UTC)


class JobState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class RunState(StrEnum):
    WAITING = "waiting"
    TRANSFORMING = "transforming"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


IN_FLIGHT = (RunState.TRANSFORMING, RunState.LOADING)


class Job(SQLModel, table=True):
    """A load job: watch a source template from a start date and keep a warehouse table loaded."""

    __tablename__ = "loader_job"
    # Ids are never reused after a delete (Postgres sequences never are; SQLite needs AUTOINCREMENT for that).
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    schema_name: str = Field(max_length=127)
    schema_version: int
    source: str = Field(max_length=1024, description="s3://bucket/prefix/ template with YYYY, MM, DD")
    start_date: date
    end_date: date | None = None
    warehouse: str = Field(default="duckdb", max_length=16)
    engine: str = Field(default="local", max_length=16, description="transform engine asked for: local, emr, glue")
    table_name: str = Field(max_length=63)
    emails: str = Field(default="", description="space-separated recipients")
    retention_days: int | None = None
    # A Redshift job's cluster or Serverless workgroup (RedshiftTarget as JSON); None for other warehouses.
    redshift_target: str | None = Field(default=None, max_length=2048)
    state: str = Field(default=JobState.ACTIVE, max_length=16, index=True)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)

    @property
    def template(self) -> SourceTemplate:
        """Return the parsed source template."""
        return SourceTemplate.parse(self.source)

    @property
    def recipients(self) -> list[str]:
        """Return the notification recipients."""
        return self.emails.split()

    @property
    def redshift(self) -> RedshiftTarget | None:
        """Return the Redshift cluster or workgroup this job loads into (None for other warehouses)."""
        return RedshiftTarget.model_validate_json(self.redshift_target) if self.redshift_target else None


class JobRun(SQLModel, table=True):
    """One date of one job: its state, attempts, row counts and timings. Unique per (job, date)."""

    __tablename__ = "loader_job_run"
    __table_args__ = (UniqueConstraint("job_id", "dt", name="uq_loader_run_job_dt"), {"sqlite_autoincrement": True})

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(index=True)
    dt: date
    state: str = Field(default=RunState.WAITING, max_length=16, index=True)
    attempts: int = 0
    error: str | None = None
    next_attempt_at: datetime | None = None
    transform_id: str | None = None
    rows_in: int | None = None
    rows_bad: int | None = None
    rows_loaded: int | None = None
    created_at: datetime = Field(default_factory=utc_now)
    transform_started_at: datetime | None = None
    load_started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utc_now)


class RunEvent(SQLModel, table=True):
    """The runs history: every state change, failure and deletion of a job's dates."""

    __tablename__ = "loader_run_event"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(index=True)
    dt: date
    event: str = Field(max_length=32)
    detail: str = ""
    at: datetime = Field(default_factory=utc_now)


class RedshiftTarget(BaseModel):
    """Where a Redshift job loads: a provisioned cluster (with a database user or a secret) or a Serverless
    workgroup (with a secret, or the caller's IAM identity). Exactly one of ``cluster_id`` and ``workgroup``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"cluster_id": "analytics", "database": "dev", "db_user": "headwater"},
                {"workgroup": "ads-serverless", "database": "dev"},
            ]
        },
    )

    cluster_id: str | None = PydanticField(default=None, min_length=1, max_length=63, pattern=r"^[a-z](?:-?[a-z0-9])*$")
    workgroup: str | None = PydanticField(default=None, min_length=3, max_length=64, pattern=r"^[a-z0-9-]+$")
    database: str = PydanticField(default="dev", min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_$]*$")
    db_user: str | None = PydanticField(
        default=None, min_length=1, max_length=128, pattern=r"^[a-z_][a-z0-9_$]*$", description="cluster only"
    )
    secret_arn: str | None = PydanticField(
        default=None,
        max_length=2048,
        pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$",
    )

    @model_validator(mode="after")
    def _one_target(self) -> RedshiftTarget:
        if (self.cluster_id is None) == (self.workgroup is None):
            raise ValueError("name exactly one of cluster_id (provisioned) and workgroup (Serverless)")
        if self.workgroup is not None and self.db_user is not None:
            raise ValueError("db_user is for a provisioned cluster; a workgroup uses secret_arn or IAM")
        if self.db_user is not None and self.secret_arn is not None:
            raise ValueError("give db_user or secret_arn, not both")
        if self.cluster_id is not None and self.db_user is None and self.secret_arn is None:
            raise ValueError("a cluster needs db_user (temporary credentials) or secret_arn")
        return self

    def data_api_params(self) -> dict[str, str]:
        """Return the Data API's target parameters (ClusterIdentifier/WorkgroupName, Database, DbUser/SecretArn)."""
        params = {"Database": self.database}
        if self.cluster_id is not None:
            params["ClusterIdentifier"] = self.cluster_id
        if self.workgroup is not None:
            params["WorkgroupName"] = self.workgroup
        if self.db_user is not None:
            params["DbUser"] = self.db_user
        if self.secret_arn is not None:
            params["SecretArn"] = self.secret_arn
        return params


class JobCreate(BaseModel):
    """Create a load job."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "ad events",
                    "schema_name": "ad_events",
                    "schema_version": 1,
                    "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
                    "start_date": "2026-11-01",
                    "warehouse": "duckdb",
                    "table": "ad_events",
                    "emails": ["data@example.com"],
                    "retention_days": 90,
                }
            ]
        }
    )

    name: str = PydanticField(
        min_length=1, max_length=200, pattern=JOB_NAME_PATTERN, description="not blank, no control characters"
    )
    schema_name: str = PydanticField(min_length=1, max_length=127)
    schema_version: int = PydanticField(ge=1, le=ID_MAX)
    source: str = PydanticField(description="s3://bucket/prefix/YYYY/MM/DD/ or s3://bucket/prefix/dt=YYYY-MM-DD/")
    start_date: IsoDate
    end_date: IsoDate | None = None
    warehouse: Warehouse = "duckdb"
    engine: Engine = PydanticField(default="local", description="transform engine: local, emr or glue")
    table: str | None = PydanticField(
        default=None,
        description="warehouse table; defaults to the schema name",
        json_schema_extra={"pattern": TABLE_NAME.pattern},  # the rule _valid_table enforces, stated in the spec
    )
    emails: list[str] = PydanticField(default_factory=list, json_schema_extra=EMAILS_SCHEMA)
    retention_days: int | None = PydanticField(default=None, ge=1, le=RETENTION_DAYS_MAX)
    redshift: RedshiftTarget | None = PydanticField(
        default=None,
        description="warehouse redshift only: the cluster or Serverless workgroup to load into "
        "(defaults to the loader's configured cluster)",
    )

    @model_validator(mode="after")
    def _redshift_only_for_redshift(self) -> JobCreate:
        if self.redshift is not None and self.warehouse != "redshift":
            raise ValueError(f"redshift names a Redshift target; this job's warehouse is {self.warehouse}")
        return self

    @field_validator("source")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        try:
            SourceTemplate.parse(value)
        except TemplateError as exc:
            raise ValueError(f"bad source template: {exc}") from exc
        return value

    @field_validator("end_date")
    @classmethod
    def _end_after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if value is not None and start is not None and value < start:
            raise ValueError("end_date is before start_date")
        return value

    @field_validator("table")
    @classmethod
    def _valid_table(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_NAME.match(value):
            raise ValueError("table names are lower-case letters, digits and _ (at most 63)")
        return value

    @field_validator("emails")
    @classmethod
    def _valid_emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if len(address) > 254 or not EMAIL.match(address):
                raise ValueError(f"not an email address: {address!r}")
        return value


class JobUpdate(BaseModel):
    """Change a job: move it to a newer schema version (adds columns), or change its end, mails, retention."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"schema_version": 2, "retention_days": 30}]})

    schema_version: int | None = PydanticField(default=None, ge=1, le=ID_MAX)
    end_date: IsoDate | None = None
    emails: list[str] | None = PydanticField(default=None, json_schema_extra=EMAILS_SCHEMA)
    retention_days: int | None = PydanticField(default=None, ge=1, le=RETENTION_DAYS_MAX)

    @field_validator("emails")
    @classmethod
    def _valid_emails(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if len(address) > 254 or not EMAIL.match(address):
                raise ValueError(f"not an email address: {address!r}")
        return value


JOB_EXAMPLE: dict[str, object] = {
    "id": 1,
    "name": "ad events",
    "schema_name": "ad_events",
    "schema_version": 1,
    "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
    "start_date": "2026-11-01",
    "end_date": None,
    "warehouse": "duckdb",
    "engine": "local",
    "table": "ad_events",
    "emails": ["data@example.com"],
    "retention_days": 90,
    "redshift": None,
    "state": "active",
    "created_at": "2026-11-25T12:00:00Z",
    "updated_at": "2026-11-25T12:00:00Z",
    "runs": {"loaded": 23, "transforming": 1},
}


class JobRead(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    id: int
    name: str
    schema_name: str
    schema_version: int
    source: str
    start_date: date
    end_date: date | None
    warehouse: str
    engine: str
    table: str
    emails: list[str]
    retention_days: int | None
    redshift: RedshiftTarget | None = None
    state: str
    created_at: datetime
    updated_at: datetime
    runs: dict[str, int] = PydanticField(default_factory=dict, description="number of dates per run state")

    @classmethod
    def of(cls, job: Job, runs: dict[str, int] | None = None) -> JobRead:
        """Build from a Job row."""
        return cls(
            id=job.id or 0,
            name=job.name,
            schema_name=job.schema_name,
            schema_version=job.schema_version,
            source=job.source,
            start_date=job.start_date,
            end_date=job.end_date,
            warehouse=job.warehouse,
            engine=job.engine,
            table=job.table_name,
            emails=job.recipients,
            retention_days=job.retention_days,
            redshift=job.redshift,
            state=job.state,
            created_at=job.created_at,
            updated_at=job.updated_at,
            runs=runs or {},
        )


class RunRead(BaseModel):
    """One date's run."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "job_id": 1,
                    "dt": "2026-11-20",
                    "state": "loaded",
                    "attempts": 1,
                    "error": None,
                    "next_attempt_at": None,
                    "transform_id": "5f0c...",
                    "rows_in": 1000,
                    "rows_bad": 2,
                    "rows_loaded": 998,
                    "created_at": "2026-11-21T00:05:00Z",
                    "transform_started_at": "2026-11-21T00:05:01Z",
                    "load_started_at": "2026-11-21T00:05:09Z",
                    "finished_at": "2026-11-21T00:05:10Z",
                    "load_seconds": 1.2,
                }
            ]
        }
    )

    id: int
    job_id: int
    dt: date
    state: str
    attempts: int
    error: str | None
    next_attempt_at: datetime | None
    transform_id: str | None
    rows_in: int | None
    rows_bad: int | None
    rows_loaded: int | None
    created_at: datetime
    transform_started_at: datetime | None
    load_started_at: datetime | None
    finished_at: datetime | None
    load_seconds: float | None = None

    @field_validator("error")
    @classmethod
    def _redact(cls, value: str | None) -> str | None:
        return redact_account_ids(value)

    @classmethod
    def of(cls, run: JobRun) -> RunRead:
        """Build from a JobRun row."""
        seconds = None
        if run.load_started_at and run.finished_at and run.state == RunState.LOADED:
            seconds = (run.finished_at - run.load_started_at).total_seconds()
        data = run.model_dump()
        return cls(**{k: v for k, v in data.items() if k in cls.model_fields}, load_seconds=seconds)


class RunEventRead(BaseModel):
    """One history entry."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": 1,
                    "dt": "2026-08-01",
                    "event": "expired",
                    "detail": "retention 90 days: deleted 998 rows and 3 curated objects",
                    "at": "2026-11-25T13:00:00Z",
                }
            ]
        }
    )

    job_id: int
    dt: date
    event: str
    detail: str
    at: datetime

    @field_validator("detail")
    @classmethod
    def _redact(cls, value: str) -> str:
        return redact_account_ids(value) or ""


class JobAction(BaseModel):
    """Result of a job action."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"job": JOB_EXAMPLE | {"state": "paused"}, "action": "pause"}]}
    )

    job: JobRead
    action: str


class DeleteResult(BaseModel):
    """Result of deleting a job."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"job_id": 1, "deleted": True, "dates_dropped": 23}]})

    job_id: int
    deleted: bool
    dates_dropped: int


class TrafficDay(BaseModel):
    """One day of one ad."""

    dt: date
    impressions: int
    clicks: int
    ctr: float


class TrafficSeries(BaseModel):
    """Per-day series and totals of one ad."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ad_id": "ad-1",
                    "start": "2026-11-20",
                    "end": "2026-11-22",
                    "days": [{"dt": "2026-11-20", "impressions": 100, "clicks": 3, "ctr": 0.03}],
                    "totals": {"impressions": 100, "clicks": 3, "ctr": 0.03},
                }
            ]
        }
    )

    ad_id: str
    start: date
    end: date
    days: list[TrafficDay]
    totals: dict[str, float | int]


class WarehouseCount(BaseModel):
    """Rows of a warehouse table (for one date when given)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"table": "ad_events", "warehouse": "duckdb", "dt": "2026-11-20", "rows": 998}]}
    )

    table: str
    warehouse: str
    dt: date | None
    rows: int
