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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.contracts import (
    advertising_view_table_prefix,
    curated_table_prefix,
    parse_partition,
)
from shared.logging import get_logger
from shared.orcparts import ensure_parquet_beside, is_orc

log = get_logger(__name__)


@dataclass(frozen=True)
class TimeWindow:
    """Half-open event-time bounds [start, end); None means unbounded."""

    start: datetime | None = None
    end: datetime | None = None

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


async def mirror(
    s3: Any, bucket: str, objects: Iterable[tuple[str, int]], cache_dir: Path, *, concurrency: int = 16
) -> int:
    """Copy objects missing from the mirror; return how many were downloaded."""
    root = cache_dir / bucket
    missing = []
    for key, size in objects:
        path = root / key
        if not (path.exists() and path.stat().st_size == size):
            missing.append((key, path))
    semaphore = asyncio.Semaphore(concurrency)

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
    s3: Any,
    *,
    bucket: str,
    cache_dir: Path,
    sources: list[str] | None = None,
    window: TimeWindow | None = None,
    concurrency: int = 8,
) -> int:
    """Mirror the raw archive's ``*.json.gz`` objects of ``sources`` inside ``window`` (pruned on dt/hour).

    Listing is by prefix: one delimited listing per source names the days that exist, and only the days inside
    the window are listed further, at most ``concurrency`` listings at a time (a wide window costs what the
    archive holds, not one listing per calendar day).
    """
    window = window or TimeWindow()
    slots = asyncio.Semaphore(concurrency)

    async def _bounded(call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        async with slots:
            return await call(*args)

    chosen = sources or await list_top_level(s3, bucket)
    days = await asyncio.gather(*(_bounded(list_top_level, s3, bucket, f"{src}/") for src in chosen))
    prefixes = [
        f"{src}/{name}/"
        for src, names in zip(chosen, days, strict=True)
        for name in names
        if parse_partition(f"{name}/") is not None and window.touches(f"{name}/")
    ]
    listed = await asyncio.gather(*(_bounded(list_keys, s3, bucket, prefix) for prefix in prefixes))
    objects = [(k, n) for batch in listed for k, n in batch if k.endswith(".json.gz") and window.touches(k)]
    return await mirror(s3, bucket, objects, cache_dir, concurrency=concurrency)


async def _table_versions(s3: Any, bucket: str, table: str) -> list[int]:
    names = await list_top_level(s3, bucket, f"{table}/")
    return [int(name[1:]) for name in names if name[:1] == "v" and name[1:].isdigit()]


async def sync_curated(s3: Any, *, bucket: str, cache_dir: Path, tables: list[str]) -> int:
    """Mirror the Parquet and ORC parts of every version of the named curated tables (and their advertising views).

    An ORC part is read as Parquet: its Parquet rewrite sits beside it in the mirror (``part-00000.orc.parquet``,
    redone when the part changes), which the sandbox's ``*.parquet`` views pick up like any other part.
    """
    versions = await asyncio.gather(*(_table_versions(s3, bucket, table) for table in tables))
    prefixes = [curated_table_prefix(t, v) for t, found in zip(tables, versions, strict=True) for v in found]
    prefixes += [advertising_view_table_prefix(t) for t in tables]
    listed = await asyncio.gather(*(list_keys(s3, bucket, prefix) for prefix in prefixes))
    objects = [(k, n) for batch in listed for k, n in batch if k.endswith(".parquet") or is_orc(k)]
    copied = await mirror(s3, bucket, objects, cache_dir)
    for key, _ in objects:
        if is_orc(key):
            await asyncio.to_thread(ensure_parquet_beside, cache_dir / bucket / key)
    return copied
