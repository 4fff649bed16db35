"""Local mirror of the S3 archive that DuckDB reads.

Why a mirror instead of DuckDB's httpfs: the DuckDB wheel here is 2.0.x and the PyPI extension packages
(``duckdb-extension-httpfs``) stop at 1.5.x, and DuckDB's own extension download needs the internet. Archived
objects are immutable and deterministically named, so copying each once (listing pruned on ``dt``/``hour``)
into ``<data_dir>/replay/cache/<bucket>/<key>`` and letting DuckDB read the files with hive partitioning is
offline, incremental and keeps DuckDB's own partition pruning on ``dt``/``hour``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.contracts import (
    advertising_view_table_prefix,
    curated_table_prefix,
    parse_partition,
    raw_day_prefix,
)
from shared.logging import get_logger

log = get_logger(__name__)

_DOWNLOAD_CONCURRENCY = 16


@dataclass(frozen=True)
class TimeWindow:
    """Half-open event-time bounds [start, end); None means unbounded."""

    start: datetime | None = None
    end: datetime | None = None

    def days(self) -> list[date] | None:
        """Return every UTC day the window touches, or None when it is unbounded."""
        if self.start is None or self.end is None:
            return None
        day, last = self.start.astimezone(UTC).date(), (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()
        out = []
        while day <= last:
            out.append(day)
            day += timedelta(days=1)
        return out

    def touches(self, key: str) -> bool:
        """Return whether the dt/hour partition of ``key`` can hold events inside the window."""
        partition = parse_partition(key)
        if partition is None:
            return True
        day, hour = partition
        first = datetime(day.year, day.month, day.day, tzinfo=UTC)
        span = timedelta(days=1)
        if hour is not None:
            first += timedelta(hours=hour)
            span = timedelta(hours=1)
        if self.start is not None and first + span <= self.start:
            return False
        return not (self.end is not None and first >= self.end)


async def list_keys(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    """Return (key, size) of every object under ``prefix``."""
    out: list[tuple[str, int]] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        out.extend((obj["Key"], obj["Size"]) for obj in page.get("Contents", []))
    return out


async def list_top_level(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Return the next path components under ``prefix`` (sources or tables at the top of a bucket)."""
    names: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
    return names


async def mirror(s3: Any, bucket: str, objects: Iterable[tuple[str, int]], cache_dir: Path) -> int:
    """Copy objects missing from the mirror; return how many were downloaded."""
    root = cache_dir / bucket
    missing = []
    for key, size in objects:
        path = root / key
        if not (path.exists() and path.stat().st_size == size):
            missing.append((key, path))
    semaphore = asyncio.Semaphore(_DOWNLOAD_CONCURRENCY)

    async def _one(key: str, path: Path) -> None:
        async with semaphore:
            response = await s3.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                body = await stream.read()
        await asyncio.to_thread(_write_atomically, path, body)

    await asyncio.gather(*(_one(key, path) for key, path in missing))
    if missing:
        log.info("archive_mirrored", bucket=bucket, objects=len(missing))
    return len(missing)


def _write_atomically(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)


async def sync_raw(
    s3: Any, *, bucket: str, cache_dir: Path, sources: list[str] | None = None, window: TimeWindow | None = None
) -> int:
    """Mirror the raw archive's ``*.json.gz`` objects of ``sources`` inside ``window`` (pruned on dt/hour)."""
    window = window or TimeWindow()
    chosen = sources or await list_top_level(s3, bucket)
    days = window.days()
    if days is None:
        prefixes = [f"{src}/" for src in chosen]
    else:
        prefixes = [raw_day_prefix(src, day) for src in chosen for day in days]
    listed = await asyncio.gather(*(list_keys(s3, bucket, prefix) for prefix in prefixes))
    objects = [(k, n) for batch in listed for k, n in batch if k.endswith(".json.gz") and window.touches(k)]
    return await mirror(s3, bucket, objects, cache_dir)


async def _table_versions(s3: Any, bucket: str, table: str) -> list[int]:
    names = await list_top_level(s3, bucket, f"{table}/")
    return [int(name[1:]) for name in names if name[:1] == "v" and name[1:].isdigit()]


async def sync_curated(s3: Any, *, bucket: str, cache_dir: Path, tables: list[str]) -> int:
    """Mirror the Parquet files of every version of the named curated tables (and their advertising views)."""
    versions = await asyncio.gather(*(_table_versions(s3, bucket, table) for table in tables))
    prefixes = [curated_table_prefix(t, v) for t, found in zip(tables, versions, strict=True) for v in found]
    prefixes += [advertising_view_table_prefix(t) for t in tables]
    listed = await asyncio.gather(*(list_keys(s3, bucket, prefix) for prefix in prefixes))
    objects = [(k, n) for batch in listed for k, n in batch if k.endswith(".parquet")]
    return await mirror(s3, bucket, objects, cache_dir)
