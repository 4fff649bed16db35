"""Plays transform's part in the loader tests: consumes TransformRequest, writes Parquet + manifest
(+ the advertising view) to the curated bucket, and answers LoadRequest or TransformFailed.

Keys and the manifest come from ``shared.contracts`` (as transform writes them), so a change of the contract
breaks these tests rather than production.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

from shared.contracts import (
    CuratedPartition,
    Manifest,
    ManifestDetails,
    ManifestEntry,
    ManifestEntryMeta,
    day_marker_key,
    raw_hour_prefix,
    schema_key,
)
from shared.messages import LoadRequest, TransformFailed, TransformRequest, new_id, parse_message
from shared.queues import consume_queue, send_message
from shared.settings import HeadwaterSettings

AD_EVENTS_YAML = """\
name: ad_events
version: 1
columns:
  - {name: event_id, source: event_id, type: varchar(64), nullable: false}
  - {name: event_type, source: type, type: varchar(32)}
  - {name: ad_id, type: varchar(128)}
  - {name: campaign_id, type: varchar(128)}
  - {name: placement, type: varchar(128)}
  - {name: user_id, type: varchar(256)}
  - {name: event_time, type: timestamp, transform: iso_to_timestamp}
  - {name: received_at, type: timestamp, transform: iso_to_timestamp}
  - {name: dt, source: event_time, type: date}
partition_column: dt
sort_key: [event_time]
dist_key: ad_id
"""

AD_EVENTS_V2_YAML = AD_EVENTS_YAML.replace("version: 1", "version: 2").replace(
    "  - {name: dt, source: event_time, type: date}",
    "  - {name: country, source: properties.country, type: varchar(8)}\n  - {name: dt, source: event_time, type: date}",
)

ARROW = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("ad_id", pa.string()),
        ("campaign_id", pa.string()),
        ("placement", pa.string()),
        ("user_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
    ]
)  # as transform writes it: UTC instants, dt in the partition path only


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def beacon_events(day: date, ads: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Return archived beacon records for ``day``: {ad_id: (impressions, clicks)}."""
    records = []
    for ad_id, (impressions, clicks) in ads.items():
        for kind, count in (("impression", impressions), ("click", clicks)):
            for i in range(count):
                stamp = f"{day.isoformat()}T{(i % 24):02d}:00:{(i % 60):02d}Z"
                records.append(
                    {
                        "event_id": f"{ad_id}-{kind}-{day.isoformat()}-{i}",
                        "type": kind,
                        "source": "beacon",
                        "event_time": stamp,
                        "received_at": stamp,
                        "client_ip_hash": None,
                        "ad_id": ad_id,
                        "campaign_id": "c1",
                        "placement": "top",
                        "user_id": f"u{i}",
                        "properties": {},
                    }
                )
    return records


async def put_day(s3: Any, settings: HeadwaterSettings, day: date, records: list[dict[str, Any]]) -> None:
    """Archive a day's records like ingest does, then write its _COMPLETE marker."""
    bucket = settings.bucket("raw")
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    # One object per day under a fixed name: the tests pass a whole day each time, so writing it again replaces it.
    await s3.put_object(Bucket=bucket, Key=f"{raw_hour_prefix('beacon', day, 0)}part-0.json.gz", Body=body)
    marker = {"source": "beacon", "dt": day.isoformat(), "events": len(records), "objects": 1}
    await s3.put_object(Bucket=bucket, Key=day_marker_key("beacon", day), Body=json.dumps(marker).encode())


async def put_schema(s3: Any, settings: HeadwaterSettings, text: str = AD_EVENTS_YAML, version: int = 1) -> None:
    """Register a schema where transform's registry keeps its S3 copy."""
    await s3.put_object(Bucket=settings.bucket("curated"), Key=schema_key("ad_events", version), Body=text.encode())


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _orc(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    orc.write_table(table, sink, compression="zstd")  # as transform's ORC sink writes parts
    return sink.getvalue()


class FakeTransform:
    """A stand-in for the transform service, driven by the test."""

    def __init__(self, settings: HeadwaterSettings, aws: Any) -> None:
        self.settings = settings
        self.aws = aws
        self.requests: list[TransformRequest] = []
        self.fail_dates: set[date] = set()
        self.manifest_late: set[date] = set()  # send LoadRequest before the manifest exists (S3 error once)
        self.held_manifests: dict[date, tuple[str, bytes]] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.output_format = "parquet"  # or "orc", as transform's output_format setting

    async def run(self, stop: asyncio.Event) -> None:
        sqs = await self.aws.get("sqs")
        await consume_queue(sqs, self.settings.queue("transform-requests"), self._handle, stop=stop, wait_seconds=1)

    async def _handle(self, message: dict[str, Any]) -> None:
        request = parse_message(message["Body"])
        assert isinstance(request, TransformRequest)
        self.requests.append(request)
        await self.gate.wait()
        sqs = await self.aws.get("sqs")
        queue = self.settings.queue("load-requests")
        if request.dt in self.fail_dates:
            failure = TransformFailed(
                job_id=request.job_id,
                run_id=request.run_id,
                table=request.table,
                schema_version=request.schema_version,
                dt=request.dt,
                error="mapping exploded",
            )
            await send_message(sqs, queue, failure)
            return
        await send_message(sqs, queue, await self.transform(request))

    async def read_raw(self, request: TransformRequest) -> list[dict[str, Any]]:
        s3 = await self.aws.get("s3")
        page = await s3.list_objects_v2(Bucket=request.source_bucket, Prefix=request.source_prefix)
        records = []
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".json.gz"):
                continue
            body = await (await s3.get_object(Bucket=request.source_bucket, Key=obj["Key"]))["Body"].read()
            records.extend(json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip())
        return records

    async def transform(self, request: TransformRequest) -> LoadRequest:
        s3 = await self.aws.get("s3")
        records = await self.read_raw(request)
        rows = [
            {
                "event_id": r["event_id"],
                "event_type": r["type"],
                "ad_id": r["ad_id"],
                "campaign_id": r["campaign_id"],
                "placement": r["placement"],
                "user_id": r["user_id"],
                "event_time": _ts(r["event_time"]),
                "received_at": _ts(r["received_at"]),
            }
            for r in records
        ]
        curated = self.settings.bucket("curated")
        partition = CuratedPartition(request.table, request.schema_version, request.dt)
        table = pa.Table.from_pylist(rows, schema=ARROW)
        data = _orc(table) if self.output_format == "orc" else _parquet(table)
        part_key = partition.part(0, self.output_format)
        await s3.put_object(Bucket=curated, Key=part_key, Body=data)
        transform_id = new_id()
        manifest = Manifest(
            entries=[
                ManifestEntry(
                    url=f"s3://{curated}/{part_key}",
                    meta=ManifestEntryMeta(content_length=len(data), record_count=len(rows)),
                )
            ],
            headwater=ManifestDetails(
                table=request.table,
                version=request.schema_version,
                dt=request.dt,
                rows=len(rows),
                transform_id=transform_id,
                format="orc" if self.output_format == "orc" else "parquet",
                advertising_view_key=partition.advertising_view,
            ),
        )
        manifest_key = partition.manifest
        if request.dt in self.manifest_late:
            self.held_manifests[request.dt] = (manifest_key, manifest.encode())
        else:
            await s3.put_object(Bucket=curated, Key=manifest_key, Body=manifest.encode())
        counts: dict[str, list[int]] = {}
        for row in rows:
            pair = counts.setdefault(row["ad_id"], [0, 0])
            pair[0 if row["event_type"] == "impression" else 1] += 1
        view = pa.Table.from_pylist(
            [
                {"ad_id": ad, "impressions": imp, "clicks": clk, "ctr": clk / imp if imp else 0.0}
                for ad, (imp, clk) in sorted(counts.items())
            ],
            schema=pa.schema(
                [
                    ("ad_id", pa.string()),
                    ("impressions", pa.int64()),
                    ("clicks", pa.int64()),
                    ("ctr", pa.float64()),
                ]
            ),
        )
        view_key = partition.advertising_view
        await s3.put_object(Bucket=curated, Key=view_key, Body=_parquet(view))
        return LoadRequest(
            job_id=request.job_id,
            run_id=request.run_id,
            transform_id=transform_id,
            table=request.table,
            schema_version=request.schema_version,
            dt=request.dt,
            bucket=curated,
            manifest_key=manifest_key,
            rows_in=len(records),
            rows_out=len(rows),
            rows_bad=0,
            advertising_view_key=view_key,
        )

    async def release_manifest(self, day: date) -> None:
        key, body = self.held_manifests.pop(day)
        await (await self.aws.get("s3")).put_object(Bucket=self.settings.bucket("curated"), Key=key, Body=body)
