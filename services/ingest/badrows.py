"""Bad rows: accepted events that fail validation when shipped, kept in ``s3://<prefix>-bad-rows/ingest/``.

Each object holds the rows of one spool segment, one JSON line per row: ``reason``, ``segment`` and ``original``
(the record as accepted). Its key carries the row count (``...-n<count>.jsonl.gz``), so counting needs only a
listing, and it is named after the segment, so a re-ship after a crash overwrites it. Re-submitting an object
feeds its records back through the spool (with a new ``received_at``; optionally ``event_time`` reset to it)
and moves the object under ``resubmitted/`` so it cannot be re-submitted twice.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, Field

from shared.errors import NotFoundError, UnprocessableError
from shared.logging import get_logger

if TYPE_CHECKING:
    from services.ingest.intake import Intake

log = get_logger(__name__)

PREFIX = "ingest/"
RESUBMITTED_PREFIX = "resubmitted/"
_ROWS_IN_KEY = re.compile(r"-n(\d+)\.jsonl\.gz$")


class BadRowsObject(BaseModel):
    """One bad-rows object."""

    key: str
    rows: int


class BadRowsSummary(BaseModel):
    """Bad rows waiting for attention."""

    total: int
    objects: list[BadRowsObject]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "total": 2,
                    "objects": [{"key": "ingest/dt=2026-11-25/1795609425766c2c968-00000003-n2.jsonl.gz", "rows": 2}],
                }
            ]
        }
    }


class ResubmitRequest(BaseModel):
    """Which bad-rows object to feed back, and how."""

    key: str = Field(pattern=r"^ingest/dt=\d{4}-\d\d-\d\d/[A-Za-z0-9-]+\.jsonl\.gz$")
    reset_event_time: bool = Field(default=False, description="set event_time to the new received_at")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"key": "ingest/dt=2026-11-25/1795609425766c2c968-00000003-n2.jsonl.gz", "reset_event_time": True}
            ]
        }
    }


class ResubmitResult(BaseModel):
    """Outcome of a re-submission."""

    key: str
    resubmitted: int
    moved_to: str

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "key": "ingest/dt=2026-11-25/1795609425766c2c968-00000003-n2.jsonl.gz",
                    "resubmitted": 2,
                    "moved_to": "resubmitted/ingest/dt=2026-11-25/1795609425766c2c968-00000003-n2.jsonl.gz",
                }
            ]
        }
    }


def bad_rows_key(dt: str, segment_name: str, rows: int) -> str:
    """Return the key of a segment's bad rows."""
    return f"{PREFIX}dt={dt}/{segment_name}-n{rows}.jsonl.gz"


async def write_bad_rows(s3: Any, *, bucket: str, dt: str, segment_name: str, rows: list[dict[str, Any]]) -> str:
    """Write one segment's bad rows; return the key."""
    key = bad_rows_key(dt, segment_name, len(rows))
    body = await asyncio.to_thread(gzip.compress, b"".join(orjson.dumps(row) + b"\n" for row in rows), 6, mtime=0)
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")
    log.warning("bad_rows_written", segment=segment_name, count=len(rows), key=key)
    return key


async def summarise_bad_rows(s3: Any, *, bucket: str) -> BadRowsSummary:
    """List the bad-rows objects not yet re-submitted, with their row counts."""
    objects = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=PREFIX):
        for item in page.get("Contents", []):
            match = _ROWS_IN_KEY.search(item["Key"])
            objects.append(BadRowsObject(key=item["Key"], rows=int(match.group(1)) if match else 0))
    return BadRowsSummary(total=sum(obj.rows for obj in objects), objects=objects)


async def read_bad_rows(s3: Any, *, bucket: str, key: str) -> list[dict[str, Any]]:
    """Return the rows of one bad-rows object (404 when it does not exist)."""
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey as exc:
        raise NotFoundError(f"no bad-rows object {key}") from exc
    data = await response["Body"].read()
    return [orjson.loads(line) for line in gzip.decompress(data).splitlines() if line]


def originals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the original records of bad rows (422 when one is not a record)."""
    records = [row.get("original") for row in rows]
    if not all(isinstance(record, dict) and record.get("event_id") and record.get("type") for record in records):
        raise UnprocessableError("some rows hold no usable original record; they cannot be re-submitted")
    return records  # type: ignore[return-value]


async def move_to_resubmitted(s3: Any, *, bucket: str, key: str) -> str:
    """Move a re-submitted object out of the way; return its new key."""
    target = RESUBMITTED_PREFIX + key
    await s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
    await s3.delete_object(Bucket=bucket, Key=key)
    return target


async def resubmit(*, s3: Any, bucket: str, request: ResubmitRequest, intake: Intake) -> ResubmitResult:
    """Feed one bad-rows object's records back through the spool, then move the object out of the way."""
    records = originals(await read_bad_rows(s3, bucket=bucket, key=request.key))
    count = await intake.resubmit(records, reset_event_time=request.reset_event_time)
    moved_to = await move_to_resubmitted(s3, bucket=bucket, key=request.key)
    return ResubmitResult(key=request.key, resubmitted=count, moved_to=moved_to)
