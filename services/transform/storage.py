"""S3 access of the engines: list a raw partition, and publish a curated one atomically (parts, view, manifest).

The layout and the manifest are the contracts of ``shared.contracts``. The engine runs in a worker thread, so
this module uses a plain (thread-safe) boto3 S3 client built from the same settings as the service's aiobotocore
clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError

from shared.aws import client_kwargs
from shared.contracts import CuratedPartition, Manifest, ManifestDetails, ManifestEntry, ManifestEntryMeta
from shared.logging import get_logger
from shared.settings import HeadwaterSettings

log = get_logger(__name__)

RAW_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".gz")


def sync_client(settings: HeadwaterSettings, service: str = "s3") -> Any:
    """Create a boto3 client for ``service`` with the emulator endpoint/credentials handling of shared.aws."""
    kwargs = client_kwargs(settings, service)
    kwargs["config"] = Config(
        retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=20, connect_timeout=5, read_timeout=60
    )
    return boto3.client(service, **kwargs)


def list_keys(s3: Any, bucket: str, prefix: str, *, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield object summaries under a prefix."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = delimiter
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        yield from page.get("Contents", [])


def raw_source_keys(s3: Any, bucket: str, prefix: str, hour: int | None = None) -> list[dict[str, Any]]:
    """List the raw JSON-lines objects of a partition (markers and hidden files excluded), in key order."""
    keys = []
    for item in list_keys(s3, bucket, prefix):
        key = item["Key"]
        name = key.rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or not name.endswith(RAW_SUFFIXES):
            continue
        if hour is not None and f"/hour={hour:02d}/" not in f"/{key}":
            continue
        keys.append(item)
    return sorted(keys, key=lambda item: item["Key"])


def read_manifest(s3: Any, bucket: str, key: str) -> Manifest | None:
    """Return a partition's manifest, or None when there is none or it is not a manifest (logged)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        return Manifest.decode(body)
    except ValidationError as exc:
        # An unreadable manifest must not block the rerun that replaces it.
        log.warning("manifest_unreadable", bucket=bucket, key=key, error=str(exc)[:500])
        return None


@dataclass
class StagedPart:
    """A part uploaded under the temporary prefix."""

    key: str
    size: int
    rows: int


def publish_partition(
    s3: Any,
    *,
    curated_bucket: str,
    bad_rows_bucket: str,
    partition: CuratedPartition,
    transform_id: str,
    staged: list[StagedPart],
    extension: str,
    view_body: bytes | None,
    bad_rows_key: str | None,
    rows: int,
) -> Manifest:
    """Replace the partition's output with the staged parts and write the manifest last; return the manifest.

    The old manifest is removed first, so a reader going through manifests sees the old partition, no partition
    while the parts are swapped, or the new one, never a mix. Parts left over from a larger earlier run, the
    staging prefix and the earlier run's bad rows are deleted.
    """
    old = read_manifest(s3, curated_bucket, partition.manifest)
    s3.delete_object(Bucket=curated_bucket, Key=partition.manifest)  # a no-op when there is none
    entries = []
    published = set()
    for index, part in enumerate(staged):
        final = partition.part(index, extension)
        s3.copy({"Bucket": curated_bucket, "Key": part.key}, curated_bucket, final)
        published.add(final)
        entries.append(
            ManifestEntry(
                url=f"s3://{curated_bucket}/{final}",
                meta=ManifestEntryMeta(content_length=part.size, record_count=part.rows),
            )
        )
    for item in list_keys(s3, curated_bucket, partition.prefix, delimiter="/"):
        name = item["Key"].rsplit("/", 1)[-1]
        if name.startswith("part-") and item["Key"] not in published:
            s3.delete_object(Bucket=curated_bucket, Key=item["Key"])
    if view_body is not None:
        s3.put_object(Bucket=curated_bucket, Key=partition.advertising_view, Body=view_body)
    manifest = Manifest(
        entries=entries,
        headwater=ManifestDetails(
            table=partition.table,
            version=partition.version,
            dt=partition.dt,
            hour=partition.hour,
            rows=rows,
            transform_id=transform_id,
            format="orc" if extension == "orc" else "parquet",
            bad_rows_key=bad_rows_key,
            advertising_view_key=partition.advertising_view if view_body is not None else None,
        ),
    )
    s3.put_object(Bucket=curated_bucket, Key=partition.manifest, Body=manifest.encode(), ContentType="application/json")
    for part in staged:
        s3.delete_object(Bucket=curated_bucket, Key=part.key)
    old_bad = old.headwater.bad_rows_key if old is not None else None
    if old_bad and old_bad != bad_rows_key:
        s3.delete_object(Bucket=bad_rows_bucket, Key=old_bad)
    return manifest
