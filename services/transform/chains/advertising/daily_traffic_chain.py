"""Advertising traffic: per-day ad views from curated data, rolled up into a CTR report over a date range."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.transform.chains.base import Task, TaskContext
from shared.contracts import CuratedPartition


class DayParams(BaseModel):
    """One day of one curated table version."""

    model_config = ConfigDict(extra="forbid")
    table: str = "ad_events"
    version: int = Field(default=1, ge=1)
    dt: date


class RangeParams(BaseModel):
    """A range of days (at most 31) of one curated table version."""

    model_config = ConfigDict(extra="forbid")
    table: str = "ad_events"
    version: int = Field(default=1, ge=1)
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> RangeParams:
        if self.end < self.start or (self.end - self.start).days > 30:
            raise ValueError("end must be on or after start, at most 30 days later")
        return self


class DailyAdTrafficTask(Task):
    """Read the day's advertising view (written by the transform) into per-ad counts."""

    Params = DayParams

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        partition = CuratedPartition(params.table, params.version, params.dt)
        s3 = await context.aws.get("s3")
        response = await s3.get_object(Bucket=context.settings.bucket("curated"), Key=partition.advertising_view)
        async with response["Body"] as body:
            view = pq.read_table(io.BytesIO(await body.read()))
        rows = view.to_pylist()
        context.log(f"{len(rows)} ads on {params.dt.isoformat()} from {partition.advertising_view}")
        ads = {row["ad_id"]: {"impressions": row["impressions"], "clicks": row["clicks"]} for row in rows}
        return json.dumps({"dt": params.dt.isoformat(), "ads": ads}, sort_keys=True).encode()


class CtrReportTask(Task):
    """Sum the days of a range per ad and compute each ad's CTR."""

    Params = RangeParams

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        days = (params.end - params.start).days + 1
        return [
            (
                DailyAdTrafficTask,
                DayParams(table=params.table, version=params.version, dt=params.start + timedelta(days=offset)),
            )
            for offset in range(days)
        ]

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        totals: dict[str, list[int]] = {}
        for raw in inputs:
            for ad_id, counts in json.loads(raw)["ads"].items():
                total = totals.setdefault(ad_id, [0, 0])
                total[0] += counts["impressions"]
                total[1] += counts["clicks"]
        report = {
            ad: {"impressions": i, "clicks": c, "ctr": c / i if i else 0.0} for ad, (i, c) in sorted(totals.items())
        }
        context.log(f"{len(report)} ads over {len(inputs)} days")
        return json.dumps({"start": params.start.isoformat(), "end": params.end.isoformat(), "ads": report}).encode()
