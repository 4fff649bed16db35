"""Dataless's traffic table: per-ad per-day impressions, clicks and CTR in DynamoDB, and its queries."""

from __future__ import annotations

import asyncio
import io
from datetime import date
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq

from services.loader.models import TrafficDay, TrafficSeries
from services.loader.s3io import read_object
from shared.contracts import parse_partition
from shared.errors import UnprocessableError
from shared.settings import TRAFFIC_TABLE, HeadwaterSettings

_BATCH = 25
MAX_RANGE_DAYS = 3660  # ten years


def _read_view(data: bytes) -> list[dict[str, Any]]:
    # The day is the view path's dt= (files written before that also carry a dt column: read it when there).
    parquet = pq.ParquetFile(io.BytesIO(data))
    wanted = ["ad_id", "dt", "impressions", "clicks", "ctr"]
    return parquet.read(columns=[name for name in wanted if name in parquet.schema_arrow.names]).to_pylist()


def _item(row: dict[str, Any], dt: date) -> dict[str, Any]:
    impressions = int(row["impressions"] or 0)
    clicks = int(row["clicks"] or 0)
    ctr = row["ctr"] if row["ctr"] is not None else (clicks / impressions if impressions else 0.0)
    day = row.get("dt") or dt
    return {
        "ad_id": {"S": str(row["ad_id"])},
        "dt": {"S": day.isoformat() if isinstance(day, date) else str(day)},
        "impressions": {"N": str(impressions)},
        "clicks": {"N": str(clicks)},
        "ctr": {"N": str(Decimal(repr(float(ctr))))},
    }


async def _batch_write(dynamodb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """Send put/delete requests 25 at a time, retrying what DynamoDB leaves unprocessed."""
    for start in range(0, len(requests), _BATCH):
        pending: dict[str, Any] = {table: requests[start : start + _BATCH]}
        for attempt in range(8):
            response = await dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break
            await asyncio.sleep(0.05 * 2**attempt)
        if pending:
            raise RuntimeError(f"DynamoDB left {len(pending.get(table, []))} traffic writes unprocessed")


async def upsert_view(s3: Any, dynamodb: Any, settings: HeadwaterSettings, bucket: str, key: str, dt: date) -> int:
    """Write the advertising view's rows (one per ad and day) to the traffic table; return items written."""
    rows = await asyncio.to_thread(_read_view, await read_object(s3, bucket, key))
    rows = [row for row in rows if row.get("ad_id") is not None]
    await _batch_write(
        dynamodb, settings.table(TRAFFIC_TABLE), [{"PutRequest": {"Item": _item(row, dt)}} for row in rows]
    )
    return len(rows)


async def delete_view_days(s3: Any, dynamodb: Any, settings: HeadwaterSettings, bucket: str, prefix: str) -> int:
    """Delete the traffic items written from the advertising view objects under ``prefix``; return how many."""
    keys: set[tuple[str, str]] = set()
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".parquet"):
                rows = await asyncio.to_thread(_read_view, await read_object(s3, bucket, obj["Key"]))
                partition = parse_partition(obj["Key"])
                for row in rows:
                    day = row.get("dt") or (partition[0] if partition else None)
                    if row.get("ad_id") is not None and day is not None:
                        keys.add((str(row["ad_id"]), day.isoformat() if isinstance(day, date) else str(day)))
    requests = [{"DeleteRequest": {"Key": {"ad_id": {"S": ad}, "dt": {"S": day}}}} for ad, day in sorted(keys)]
    await _batch_write(dynamodb, settings.table(TRAFFIC_TABLE), requests)
    return len(requests)


async def traffic_series(
    dynamodb: Any, settings: HeadwaterSettings, ad_id: str, start: date, end: date
) -> TrafficSeries:
    """Return an ad's per-day series between ``start`` and ``end`` (inclusive) and its totals."""
    days: list[TrafficDay] = []
    kwargs: dict[str, Any] = {
        "TableName": settings.table(TRAFFIC_TABLE),
        "KeyConditionExpression": "ad_id = :ad AND dt BETWEEN :start AND :end",
        "ExpressionAttributeValues": {
            ":ad": {"S": ad_id},
            ":start": {"S": start.isoformat()},
            ":end": {"S": end.isoformat()},
        },
    }
    while True:
        response = await dynamodb.query(**kwargs)
        for item in response.get("Items", []):
            days.append(
                TrafficDay(
                    dt=date.fromisoformat(item["dt"]["S"]),
                    impressions=int(item["impressions"]["N"]),
                    clicks=int(item["clicks"]["N"]),
                    ctr=float(item["ctr"]["N"]),
                )
            )
        if "LastEvaluatedKey" not in response:
            break
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    impressions = sum(day.impressions for day in days)
    clicks = sum(day.clicks for day in days)
    totals: dict[str, float | int] = {
        "impressions": impressions,
        "clicks": clicks,
        "ctr": clicks / impressions if impressions else 0.0,
    }
    return TrafficSeries(ad_id=ad_id, start=start, end=end, days=days, totals=totals)


async def get_traffic(*, aws: Any, settings: HeadwaterSettings, ad_id: str, start: date, end: date) -> TrafficSeries:
    """Return an ad's traffic between two days (an unknown ad gives an empty series); reject a bad range."""
    if end < start:
        raise UnprocessableError("end is before start", details=[{"field": "end", "reason": "end is before start"}])
    if (end - start).days > MAX_RANGE_DAYS:
        raise UnprocessableError("range too long", details=[{"field": "end", "reason": "at most 10 years"}])
    return await traffic_series(await aws.get("dynamodb"), settings, ad_id, start, end)
