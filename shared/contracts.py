"""The formats services hand each other through S3: defined once, imported by every writer and every reader.

Four contracts, each with one writer and several readers:

1. **Raw record** (writer: ingest; readers: transform, replay, loader's scanner). One JSON object per line in
   gzip objects under ``<source>/dt=YYYY-MM-DD/hour=HH/`` of the raw bucket; a day is complete when
   ``<source>/dt=YYYY-MM-DD/_COMPLETE`` exists.
2. **Schema key** (writer: transform's registry; readers: ingest, loader). A registered table schema's YAML at
   ``_schemas/<name>/v<version>.yaml`` in the curated bucket.
3. **Curated partition** (writer: transform; readers: loader, replay, loader's retention). Parts at
   ``<table>/v<version>/dt=YYYY-MM-DD/[hour=HH/]part-NNNNN.<ext>``, the advertising view beside the tables under
   ``_views/advertising/<table>/v<version>/dt=YYYY-MM-DD/part-00000.parquet``, a run's staged parts under
   ``_tmp/<table>/v<version>/dt=.../<transform id>/``. Hive's convention: ``dt`` (and ``hour``) live in the path
   only, never as a column of the files; timestamps are UTC instants (Parquet isAdjustedToUTC=true).
4. **Manifest** (writer: transform, written last; reader: loader). ``_manifest.json`` in the partition, in the
   Redshift ``COPY ... MANIFEST`` shape (``entries``) plus Headwater's own ``headwater`` block.

A change here changes both sides at once; the tests of each side use these definitions, so a mismatch breaks a
test, not production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ---------------------------------------------------------------------------------------------------------------
# 1. Raw records and raw partitions
# ---------------------------------------------------------------------------------------------------------------

BEACON_TYPES = frozenset({"impression", "click"})
MARKER_NAME = "_COMPLETE"
# Fields every raw record carries, in the order ingest writes them (event_id first: see ingest's encode_lines).
RAW_BASE_FIELDS = (
    "event_id",
    "type",
    "source",
    "event_time",
    "received_at",
    "client_ip_hash",
    "ad_id",
    "campaign_id",
    "placement",
    "user_id",
    "properties",
)
METER_FIELDS = ("cloud_id", "demand_kw", "summation_delivered_kwh", "summation_received_kwh", "raw")
# An event id as ingest accepts and stores it; a source (the first path component of the raw archive) is a name.
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
SOURCE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_RAW_PARTITION = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})/(?:hour=(\d{2})/)?")


class RawRecord(BaseModel):
    """One archived event (contract 1): what ingest writes and every reader of the raw archive reads.

    Times are ISO-8601 UTC strings with a trailing ``Z`` (millisecond precision); fields beyond these (from
    other event types) are kept.
    """

    model_config = ConfigDict(extra="allow")

    event_id: str
    type: str
    source: str
    event_time: str
    received_at: str
    client_ip_hash: str | None = None
    ad_id: str | None = None
    campaign_id: str | None = None
    placement: str | None = None
    user_id: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    cloud_id: str | None = None
    demand_kw: float | None = None
    summation_delivered_kwh: float | None = None
    summation_received_kwh: float | None = None
    raw: dict[str, Any] | None = None


# The Kinesis partition key of a raw record: an entity field per source, so one entity's records land on one shard
# in order (ad_id for beacons, cloud_id for meter reads, the SDK's anonymous id for analytics events). A source
# without an entry, or a record without the field, is keyed by its event id. Ingest may override it per source.
PARTITION_KEY_FIELDS: dict[str, str] = {
    "beacon": "ad_id",
    "meter_read": "cloud_id",
    **dict.fromkeys(("track", "page", "screen", "identify", "group", "alias"), "anonymous_id"),
}


def partition_key_of(record: Mapping[str, Any], fields: Mapping[str, str] = PARTITION_KEY_FIELDS) -> str:
    """Return the partition key of a raw record: its source's entity field, else its event id (1-256 chars)."""
    name = fields.get(record.get("source"))  # type: ignore[arg-type]
    value = record.get(name) if name else None
    if value is None or value == "":
        value = record.get("event_id") or "-"
    return str(value)[:256]


def source_of(event_type: str) -> str:
    """Return the raw-archive source of an event type (impressions and clicks share ``beacon``)."""
    return "beacon" if event_type in BEACON_TYPES else event_type


def raw_day_prefix(source: str, dt: date | str) -> str:
    """Return the key prefix of one source's day in the raw bucket."""
    return f"{source}/dt={_iso(dt)}/"


def raw_hour_prefix(source: str, dt: date | str, hour: int | str) -> str:
    """Return the key prefix of one source's hour in the raw bucket."""
    return f"{raw_day_prefix(source, dt)}hour={int(hour):02d}/"


def raw_object_key(source: str, dt: date | str, hour: int | str, name: str, count: int) -> str:
    """Return the key of one archived object: ``name`` is unique per writer, ``count`` the records it holds."""
    return f"{raw_hour_prefix(source, dt, hour)}{name}-n{count}.json.gz"


def day_marker_key(source: str, dt: date | str) -> str:
    """Return the key of a day's ``_COMPLETE`` marker in the raw bucket."""
    return f"{raw_day_prefix(source, dt)}{MARKER_NAME}"


def parse_partition(key: str) -> tuple[date, int | None] | None:
    """Return the (day, hour) of a Hive-partitioned key (hour None for day-level keys), or None."""
    match = _RAW_PARTITION.search(key)
    if match is None:
        return None
    return date.fromisoformat(match.group(1)), int(match.group(2)) if match.group(2) else None


# ---------------------------------------------------------------------------------------------------------------
# 2. Schema keys
# ---------------------------------------------------------------------------------------------------------------

SCHEMAS_PREFIX = "_schemas/"


def schema_key(name: str, version: int) -> str:
    """Return the S3 key of a registered schema's YAML in the curated bucket."""
    return f"{SCHEMAS_PREFIX}{name}/v{version}.yaml"


def schema_versions_prefix(name: str) -> str:
    """Return the prefix under which every version of schema ``name`` lives."""
    return f"{SCHEMAS_PREFIX}{name}/"


# ---------------------------------------------------------------------------------------------------------------
# 3. Curated partitions and views
# ---------------------------------------------------------------------------------------------------------------

VIEWS_PREFIX = "_views/"
TEMPORARY_PREFIX = "_tmp/"  # runs stage their parts here, beside the tables like the views
ADVERTISING_VIEW = "advertising"
MANIFEST_NAME = "_manifest.json"


def curated_table_prefix(table: str, version: int) -> str:
    """Return the key prefix of one table version in the curated bucket."""
    return f"{table}/v{version}/"


def advertising_view_day_prefix(table: str, version: int, dt: date | str) -> str:
    """Return the key prefix of one day of a table's advertising view in the curated bucket."""
    return f"{VIEWS_PREFIX}{ADVERTISING_VIEW}/{table}/v{version}/dt={_iso(dt)}/"


def advertising_view_table_prefix(table: str) -> str:
    """Return the key prefix of every version of a table's advertising view."""
    return f"{VIEWS_PREFIX}{ADVERTISING_VIEW}/{table}/"


@dataclass(frozen=True)
class CuratedPartition:
    """Where one partition of a curated table lives (and its manifest, staging area, bad rows and view)."""

    table: str
    version: int
    dt: date
    hour: int | None = None

    @property
    def day_prefix(self) -> str:
        """Return the key prefix of the partition's day."""
        return f"{curated_table_prefix(self.table, self.version)}dt={self.dt.isoformat()}/"

    @property
    def prefix(self) -> str:
        """Return the partition's key prefix in the curated bucket."""
        hour = f"hour={self.hour:02d}/" if self.hour is not None else ""
        return f"{self.day_prefix}{hour}"

    @property
    def manifest(self) -> str:
        """Return the manifest key."""
        return f"{self.prefix}{MANIFEST_NAME}"

    def temporary_prefix(self, transform_id: str) -> str:
        """Return where a run stages its parts before publishing: outside the table, so no glob sees them."""
        return f"{TEMPORARY_PREFIX}{self.prefix}{transform_id}/"

    def part(self, index: int, extension: str = "parquet") -> str:
        """Return the published key of part ``index``."""
        return f"{self.prefix}part-{index:05d}.{extension}"

    def bad_rows(self, transform_id: str) -> str:
        """Return the bad-rows key of a run (in the bad-rows bucket)."""
        return f"{self.table}/dt={self.dt.isoformat()}/{transform_id}.jsonl.gz"

    @property
    def advertising_view(self) -> str:
        """Return the advertising view key (in the curated bucket)."""
        return f"{advertising_view_day_prefix(self.table, self.version, self.dt)}part-00000.parquet"


# ---------------------------------------------------------------------------------------------------------------
# 4. The manifest
# ---------------------------------------------------------------------------------------------------------------


class ManifestEntryMeta(BaseModel):
    """Size and row count of one part (Redshift reads ``content_length``)."""

    content_length: int = Field(ge=0)
    record_count: int = Field(ge=0)


class ManifestEntry(BaseModel):
    """One part of the partition, as Redshift's ``COPY ... MANIFEST`` expects it."""

    url: str = Field(pattern=r"^s3://[^/]+/.+")
    mandatory: bool = True
    meta: ManifestEntryMeta


class ManifestDetails(BaseModel):
    """Headwater's own block: what was published, by which run, and where its side outputs are."""

    table: str
    version: int
    dt: date
    hour: int | None = None
    rows: int = Field(ge=0)
    transform_id: str
    format: Literal["parquet", "orc"] = "parquet"
    bad_rows_key: str | None = None
    advertising_view_key: str | None = None


class Manifest(BaseModel):
    """A published partition (contract 4): written last by transform, read by the loader."""

    entries: list[ManifestEntry]
    headwater: ManifestDetails

    def part_keys(self) -> list[str]:
        """Return the object keys (without bucket) of the parts, in order."""
        return [entry.url.split("/", 3)[3] for entry in self.entries]

    def encode(self) -> bytes:
        """Serialise the manifest for S3."""
        return self.model_dump_json(indent=1).encode()

    @classmethod
    def decode(cls, body: bytes | str) -> Manifest:
        """Parse a manifest read from S3; raises ``pydantic.ValidationError`` when it is not one."""
        return cls.model_validate_json(body)


def _iso(dt: date | str) -> str:
    return dt.isoformat() if isinstance(dt, date) else dt
