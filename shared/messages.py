"""SQS envelopes: the contracts between services.

Each message is a versioned pydantic model with a ``type`` and an ``id``. Consumers are idempotent
on ``id`` (and on the deterministic keys they write), so at-least-once delivery never duplicates rows.
Change these like an API: add optional fields, never repurpose one. Only messages some service sends belong
here, each parsed by its consumer through :func:`parse_message` (day completion travels as S3 event notifications
of the ``_COMPLETE`` markers; mail is the loader's own business, queued in Redis).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


def new_id() -> str:
    """Return a new random message/event id (32 hex characters)."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(default_factory=new_id)
    version: int = 1
    created_at: datetime = Field(default_factory=utc_now)


class TransformRequest(Envelope):
    """Ask transform to map one raw partition to a schema version (sent by the loader's scanner)."""

    type: Literal["transform-request"] = "transform-request"
    job_id: int | None = None
    run_id: int | None = None
    table: str
    schema_version: int
    source_bucket: str
    source_prefix: str = Field(description="key prefix of the partition, e.g. 'beacon/dt=2026-11-24/'")
    dt: date
    hour: int | None = None
    engine: Literal["local", "emr", "glue"] = "local"


class LoadRequest(Envelope):
    """Transform finished a partition: its manifest lists the Parquet files to load."""

    type: Literal["load-request"] = "load-request"
    job_id: int | None = None
    run_id: int | None = None
    transform_id: str
    table: str
    schema_version: int
    dt: date
    bucket: str
    manifest_key: str
    rows_in: int
    rows_out: int
    rows_bad: int
    advertising_view_key: str | None = Field(
        default=None, description="Parquet of per-ad per-day impressions/clicks, when the table has ads"
    )


class TransformFailed(Envelope):
    """Transform gave up on a partition after its retries."""

    type: Literal["transform-failed"] = "transform-failed"
    job_id: int | None = None
    run_id: int | None = None
    table: str
    schema_version: int
    dt: date
    error: str


Message = Annotated[
    TransformRequest | LoadRequest | TransformFailed,
    Field(discriminator="type"),
]
_message_adapter: TypeAdapter[Message] = TypeAdapter(Message)


def parse_message(body: str | bytes) -> Message:
    """Parse an SQS body into its envelope type; raises ``pydantic.ValidationError`` when invalid."""
    return _message_adapter.validate_json(body)


def dump_message(message: Envelope) -> str:
    """Serialise an envelope for SQS."""
    return message.model_dump_json()
