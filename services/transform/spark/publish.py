"""Publish what a Spark run staged (``<staging>data/``, ``bad/``, ``view/``, ``_stats.json``) like a local run.

Spark names its files ``part-00000-<uuid>-c000.zstd.parquet``; publishing renames them to the contract layout
(``part-NNNNN.parquet``) with the same manifest, bad-rows object and advertising view as the local engine.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import pyarrow.orc as orc
import pyarrow.parquet as pq

from services.transform.storage import StagedPart, list_keys, publish_partition
from shared.contracts import CuratedPartition


class S3RangeFile(io.RawIOBase):
    """A read-only seekable file over S3 ranged GETs (enough for reading a Parquet/ORC footer)."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int) -> None:
        self.s3, self.bucket, self.key, self.size, self.position = s3, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, size: int = -1) -> bytes:
        if self.position >= self.size or size == 0:
            return b""
        end = self.size if size is None or size < 0 else min(self.size, self.position + size)
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end - 1}")
        data = body["Body"].read()
        self.position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def record_count(s3: Any, bucket: str, key: str, size: int) -> int:
    """Return the row count of a Parquet or ORC object from its footer."""
    handle = S3RangeFile(s3, bucket, key, size)
    if key.endswith(".orc"):
        return orc.ORCFile(handle).nrows
    return pq.read_metadata(handle).num_rows


def _concatenate_gzip(s3: Any, bucket: str, keys: list[str], target_bucket: str, target_key: str) -> None:
    """Concatenate gzip objects (a valid multi-member gzip) into one object, through a temporary file."""
    with tempfile.TemporaryFile() as spool:
        for key in keys:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in iter(lambda body=body: body.read(1024 * 1024), b""):
                spool.write(chunk)
        spool.seek(0)
        s3.upload_fileobj(
            spool,
            target_bucket,
            target_key,
            ExtraArgs={"ContentType": "application/x-ndjson", "ContentEncoding": "gzip"},
        )


def publish_spark_output(
    s3: Any,
    *,
    curated_bucket: str,
    bad_rows_bucket: str,
    partition: CuratedPartition,
    transform_id: str,
    output_format: str,
) -> dict[str, Any]:
    """Publish a Spark run's staged output; return its stats plus the keys written."""
    staging = partition.temporary_prefix(transform_id)
    stats = json.loads(s3.get_object(Bucket=curated_bucket, Key=f"{staging}_stats.json")["Body"].read())
    extension = "parquet" if output_format == "parquet" else "orc"
    staged = []
    for item in list_keys(s3, curated_bucket, f"{staging}data/"):
        name = item["Key"].rsplit("/", 1)[-1]
        if name.startswith(("_", ".")) or not name.endswith(f".{extension}"):
            continue
        rows = record_count(s3, curated_bucket, item["Key"], item["Size"])
        if rows:
            staged.append(StagedPart(item["Key"], item["Size"], rows))
    bad_parts = [
        item["Key"]
        for item in list_keys(s3, curated_bucket, f"{staging}bad/")
        if item["Key"].endswith(".json.gz") and item["Size"] > 0
    ]
    bad_rows_key = None
    if stats.get("rows_bad"):
        bad_rows_key = partition.bad_rows(transform_id)
        _concatenate_gzip(s3, curated_bucket, bad_parts, bad_rows_bucket, bad_rows_key)
    view_body = None
    if partition.hour is None:
        views = [
            item["Key"] for item in list_keys(s3, curated_bucket, f"{staging}view/") if item["Key"].endswith(".parquet")
        ]
        if views:
            view_body = s3.get_object(Bucket=curated_bucket, Key=views[0])["Body"].read()
    publish_partition(
        s3,
        curated_bucket=curated_bucket,
        bad_rows_bucket=bad_rows_bucket,
        partition=partition,
        transform_id=transform_id,
        staged=staged,
        extension=extension,
        view_body=view_body,
        bad_rows_key=bad_rows_key,
        rows=int(stats["rows_out"]),
    )
    for item in list(list_keys(s3, curated_bucket, staging)):
        s3.delete_object(Bucket=curated_bucket, Key=item["Key"])
    return {
        **stats,
        "bytes_out": sum(part.size for part in staged),
        "bad_rows_key": bad_rows_key,
        "manifest_key": partition.manifest,
        "advertising_view_key": partition.advertising_view if view_body is not None else None,
    }
