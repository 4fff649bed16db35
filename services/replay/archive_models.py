"""Request and response bodies of ``/v1/archives`` (archiving Kinesis streams Headwater does not write)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import SOURCE_NAME_PATTERN

# Kinesis's own stream-name rule.
STREAM_NAME_PATTERN = r"^[a-zA-Z0-9_.\-]{1,128}$"


class ArchiveCreate(BaseModel):
    """Archive an existing stream: every shard, from its oldest retained record on, under ``source``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"stream": "clickstream", "source": "clickstream"}]}
    )

    stream: str = Field(pattern=STREAM_NAME_PATTERN, description="name of an existing Kinesis stream")
    source: str = Field(
        pattern=SOURCE_NAME_PATTERN, description="the raw archive's source (first path component) to write under"
    )


class ArchiveShardRead(BaseModel):
    """One shard's progress: the last archived sequence number and how many records were archived."""

    shard_id: str
    checkpoint: str | None = None
    archived: int = Field(ge=0)
    closed: bool = False


_EXAMPLE = {
    "stream": "clickstream",
    "source": "clickstream",
    "created_at": "2026-11-30T12:00:00.000Z",
    "archived": 1500,
    "shards": [
        {"shard_id": "shardId-000000000000", "checkpoint": "49657...0002", "archived": 1000, "closed": False},
        {"shard_id": "shardId-000000000001", "checkpoint": "49657...0018", "archived": 500, "closed": False},
    ],
}


class ArchiveRead(BaseModel):
    """A registered archive and its progress (shards appear once the archiver has read them)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    stream: str
    source: str
    created_at: datetime
    archived: int = Field(ge=0)
    shards: list[ArchiveShardRead]


class ArchiveList(BaseModel):
    """Every registered archive."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"archives": [_EXAMPLE]}]})

    archives: list[ArchiveRead]
