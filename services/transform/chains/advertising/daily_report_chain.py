"""Daily advertising report: one day's curated advertising view as a CSV (ad, impressions, clicks, CTR)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from services.transform.chains.base import Task, TaskContext
from shared.contracts import CuratedPartition


class ReportParams(BaseModel):
    """The day (and curated table version) to report on."""

    model_config = ConfigDict(extra="forbid")
    day: date
    table: str = "ad_events"
    version: int = Field(default=1, ge=1)


class DailyReportTask(Task):
    """Read the day's advertising view (written by the transform) and write one CSV row per ad."""

    Params = ReportParams
    extension = "csv"
    retries = 2  # the view may still be landing: S3 errors are worth another try
    retry_delay_s = 5.0
    timeout_s = 600.0

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        partition = CuratedPartition(params.table, params.version, params.day)
        s3 = await context.aws.get("s3")
        response = await s3.get_object(Bucket=context.settings.bucket("curated"), Key=partition.advertising_view)
        async with response["Body"] as body:
            rows = pq.read_table(io.BytesIO(await body.read())).to_pylist()
        context.log(f"{len(rows)} ads on {params.day.isoformat()} from {partition.advertising_view}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["day", "ad_id", "impressions", "clicks", "ctr"])
        for row in sorted(rows, key=lambda r: r["ad_id"]):
            impressions, clicks = int(row["impressions"]), int(row["clicks"])
            ctr = f"{clicks / impressions:.4f}" if impressions else "0.0000"
            writer.writerow([params.day.isoformat(), row["ad_id"], impressions, clicks, ctr])
        return out.getvalue().encode()
