"""Run the local engine on one raw partition in S3 and publish the result (blocking: call it in a thread)."""

from __future__ import annotations

import io
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from services.transform.engine.local import EngineOptions, transform_sources
from services.transform.engine.sink import PartFile
from services.transform.settings import TransformSettings
from services.transform.storage import StagedPart, publish_partition, raw_source_keys
from shared.contracts import CuratedPartition
from shared.logging import get_logger
from shared.schemas import TableSchema

log = get_logger(__name__)


@dataclass
class PartitionOutcome:
    """What one partition run did."""

    transform_id: str
    rows_in: int
    rows_out: int
    rows_bad: int
    bytes_in: int
    bytes_out: int
    sources: int
    manifest_key: str
    bad_rows_key: str | None
    advertising_view_key: str | None
    duration_s: float


def engine_options(settings: TransformSettings) -> EngineOptions:
    """Return the local engine options configured in settings."""
    return EngineOptions(
        output_format=settings.output_format,
        compression=settings.compression,
        block_bytes=settings.block_bytes,
        rows_per_part=settings.rows_per_part,
        row_group_rows=settings.row_group_rows,
    )


def run_local_partition(
    s3: Any,
    settings: TransformSettings,
    *,
    schema: TableSchema,
    source_bucket: str,
    source_prefix: str,
    dt: date,
    hour: int | None,
    transform_id: str,
) -> PartitionOutcome:
    """Transform every raw object under the prefix into curated parts, bad rows and the view; publish them."""
    started = time.monotonic()
    partition = CuratedPartition(schema.name, schema.version, dt, hour)
    curated, bad_bucket = settings.bucket("curated"), settings.bucket("bad-rows")
    workdir = Path(settings.data_dir) / "transform" / "work" / transform_id
    shutil.rmtree(workdir, ignore_errors=True)
    objects = raw_source_keys(s3, source_bucket, source_prefix, hour)
    sources = [
        (
            f"s3://{source_bucket}/{item['Key']}",
            lambda key=item["Key"]: s3.get_object(Bucket=source_bucket, Key=key)["Body"],
        )
        for item in objects
    ]
    staged: list[StagedPart] = []
    staging = partition.temporary_prefix(transform_id)

    def _stage(part: PartFile) -> None:
        key = f"{staging}{part.path.name}"
        size = part.size
        s3.upload_file(str(part.path), curated, key)
        staged.append(StagedPart(key, size, part.rows))
        part.path.unlink()

    options = engine_options(settings)
    try:
        result = transform_sources(schema, sources, dt=dt, workdir=workdir, options=options, on_part=_stage)
        bad_rows_key = None
        if result.bad_rows_path is not None:
            bad_rows_key = partition.bad_rows(transform_id)
            s3.upload_file(
                str(result.bad_rows_path),
                bad_bucket,
                bad_rows_key,
                ExtraArgs={"ContentType": "application/x-ndjson", "ContentEncoding": "gzip"},
            )
        view_body = None
        if result.view is not None and hour is None:
            buffer = io.BytesIO()
            pq.write_table(result.view, buffer, compression="snappy")
            view_body = buffer.getvalue()
        extension = "parquet" if options.output_format == "parquet" else "orc"
        publish_partition(
            s3,
            curated_bucket=curated,
            bad_rows_bucket=bad_bucket,
            partition=partition,
            transform_id=transform_id,
            staged=staged,
            extension=extension,
            view_body=view_body,
            bad_rows_key=bad_rows_key,
            rows=result.rows_out,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    outcome = PartitionOutcome(
        transform_id=transform_id,
        rows_in=result.rows_in,
        rows_out=result.rows_out,
        rows_bad=result.rows_bad,
        bytes_in=result.bytes_in,
        bytes_out=sum(part.size for part in staged),
        sources=len(objects),
        manifest_key=partition.manifest,
        bad_rows_key=bad_rows_key,
        advertising_view_key=partition.advertising_view if view_body is not None else None,
        duration_s=round(time.monotonic() - started, 3),
    )
    log.info(
        "partition_transformed",
        transform_id=transform_id,
        table=schema.name,
        dt=dt.isoformat(),
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        rows_bad=outcome.rows_bad,
    )
    return outcome
