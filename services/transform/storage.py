"""S3 layout of curated data, and the atomic publish of a partition (parts, view, then the manifest).

The engine runs in a worker thread, so this module uses a plain (thread-safe) boto3 S3 client built from the
same settings as the service's aiobotocore clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.aws import client_kwargs
from shared.settings import HeadwaterSettings

RAW_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".gz")


def sync_client(settings: HeadwaterSettings, service: str = "s3") -> Any:
    """Create a boto3 client for ``service`` with the emulator endpoint/credentials handling of shared.aws."""
    kwargs = client_kwargs(settings, service)
    kwargs["config"] = Config(
        retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=20, connect_timeout=5, read_timeout=60
    )
    return boto3.client(service, **kwargs)


@dataclass(frozen=True)
class PartitionKeys:
    """Where one partition's output lives."""

    table: str
    version: int
    dt: date
    hour: int | None = None

    @property
    def prefix(self) -> str:
        """Return the partition's key prefix in the curated bucket."""
        hour = f"hour={self.hour:02d}/" if self.hour is not None else ""
        return f"{self.table}/v{self.version}/dt={self.dt.isoformat()}/{hour}"

    @property
    def manifest(self) -> str:
        """Return the manifest key."""
        return f"{self.prefix}_manifest.json"

    def temporary_prefix(self, transform_id: str) -> str:
        """Return where a run stages its parts before publishing."""
        return f"{self.prefix}_tmp/{transform_id}/"

    def part(self, index: int, extension: str = "parquet") -> str:
        """Return the published key of part ``index``."""
        return f"{self.prefix}part-{index:05d}.{extension}"

    def bad_rows(self, transform_id: str) -> str:
        """Return the bad-rows key of a run (in the bad-rows bucket)."""
        return f"{self.table}/dt={self.dt.isoformat()}/{transform_id}.jsonl.gz"

    @property
    def advertising_view(self) -> str:
        """Return the advertising view key (in the curated bucket)."""
        return f"_views/advertising/{self.table}/v{self.version}/dt={self.dt.isoformat()}/part-00000.parquet"


def schema_key(name: str, version: int) -> str:
    """Return the S3 key of a registered schema's YAML in the curated bucket (contract 3)."""
    return f"_schemas/{name}/v{version}.yaml"


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


def read_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """Return a manifest, or None when there is none."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(body)


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
    keys: PartitionKeys,
    transform_id: str,
    staged: list[StagedPart],
    extension: str,
    view_body: bytes | None,
    bad_rows_key: str | None,
    rows: int,
) -> dict[str, Any]:
    """Replace the partition's output with the staged parts and write the manifest last; return the manifest.

    The old manifest is removed first, so a reader going through manifests sees the old partition, no partition
    while the parts are swapped, or the new one, never a mix. Parts left over from a larger earlier run, the
    staging prefix and the earlier run's bad rows are deleted.
    """
    old = read_manifest(s3, curated_bucket, keys.manifest)
    if old is not None:
        s3.delete_object(Bucket=curated_bucket, Key=keys.manifest)
    entries = []
    published = set()
    for index, part in enumerate(staged):
        final = keys.part(index, extension)
        s3.copy({"Bucket": curated_bucket, "Key": part.key}, curated_bucket, final)
        published.add(final)
        entries.append(
            {
                "url": f"s3://{curated_bucket}/{final}",
                "mandatory": True,
                "meta": {"content_length": part.size, "record_count": part.rows},
            }
        )
    for item in list_keys(s3, curated_bucket, keys.prefix, delimiter="/"):
        name = item["Key"].rsplit("/", 1)[-1]
        if name.startswith("part-") and item["Key"] not in published:
            s3.delete_object(Bucket=curated_bucket, Key=item["Key"])
    if view_body is not None:
        s3.put_object(Bucket=curated_bucket, Key=keys.advertising_view, Body=view_body)
    manifest = {
        "entries": entries,
        "headwater": {
            "table": keys.table,
            "version": keys.version,
            "dt": keys.dt.isoformat(),
            "hour": keys.hour,
            "rows": rows,
            "transform_id": transform_id,
            "format": extension,
            "bad_rows_key": bad_rows_key,
            "advertising_view_key": keys.advertising_view if view_body is not None else None,
        },
    }
    s3.put_object(
        Bucket=curated_bucket,
        Key=keys.manifest,
        Body=json.dumps(manifest, indent=1).encode(),
        ContentType="application/json",
    )
    for part in staged:
        s3.delete_object(Bucket=curated_bucket, Key=part.key)
    old_bad = (old or {}).get("headwater", {}).get("bad_rows_key")
    if old_bad and old_bad != bad_rows_key:
        s3.delete_object(Bucket=bad_rows_bucket, Key=old_bad)
    return manifest
