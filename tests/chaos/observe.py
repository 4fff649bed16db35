"""Read what each hop of the mesh holds for a day and source (straight from the emulator, DuckDB and the APIs)."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq

from headwater.config import CliSettings
from shared.aws import AwsClients
from shared.kinesis import read_stream
from tests.chaos.load import ADS
from tests.chaos.scoreboard import Observed

TABLE_OF = {"beacon": "ad_events", "meter_read": "meter_reads"}


async def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys


async def _body(s3: Any, bucket: str, key: str) -> bytes:
    response = await s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as stream:
        return await stream.read()


_COUNT_IN_KEY = re.compile(r"-n(\d+)\.json\.gz$")


class Observer:
    """Read the hops of one mesh."""

    def __init__(self, settings: CliSettings, loader_url: str, headers: dict[str, str], data_dir: Path) -> None:
        self.settings = settings
        self.loader_url = loader_url
        self.headers = headers
        self.warehouse = data_dir / "loader" / "warehouse.duckdb"

    async def archive(self, aws: AwsClients, source: str, day: str) -> tuple[Observed, Observed]:
        """Return the archived ids (repeats included) and the ``_COMPLETE`` marker's count of one day."""
        s3 = await aws.get("s3")
        bucket = self.settings.bucket("raw")
        ids: list[str] = []
        for key in await _keys(s3, bucket, f"{source}/dt={day}/hour="):
            if key.endswith(".json.gz"):
                body = gzip.decompress(await _body(s3, bucket, key))
                ids += [json.loads(line)["event_id"] for line in body.splitlines() if line]
        try:
            marker = json.loads(await _body(s3, bucket, f"{source}/dt={day}/_COMPLETE"))
            marker_count = Observed(count=int(marker["events"]))
        except s3.exceptions.NoSuchKey:
            marker_count = Observed(count=0)
        return Observed(ids=ids), marker_count

    async def archive_count(self, aws: AwsClients, source: str, day: str) -> tuple[Observed, Observed]:
        """Return the archived record count (from the object names: no object is read) and the marker's count."""
        s3 = await aws.get("s3")
        bucket = self.settings.bucket("raw")
        total = 0
        for key in await _keys(s3, bucket, f"{source}/dt={day}/"):
            if match := _COUNT_IN_KEY.search(key):
                total += int(match.group(1))
        try:
            marker = json.loads(await _body(s3, bucket, f"{source}/dt={day}/_COMPLETE"))
            return Observed(count=total), Observed(count=int(marker["events"]))
        except s3.exceptions.NoSuchKey:
            return Observed(count=total), Observed(count=0)

    async def curated_count(self, aws: AwsClients, source: str, day: str) -> Observed:
        """Return the rows the day's curated manifests declare (no Parquet is read)."""
        s3 = await aws.get("s3")
        bucket = self.settings.bucket("curated")
        rows = 0
        for key in await _keys(s3, bucket, f"{TABLE_OF[source]}/v1/dt={day}/"):
            if key.endswith("_manifest.json"):
                rows += int(json.loads(await _body(s3, bucket, key))["headwater"]["rows"])
        return Observed(count=rows)

    async def curated(self, aws: AwsClients, source: str, day: str) -> Observed:
        """Return the ids in the published curated Parquet of one day (every part of every manifest)."""
        s3 = await aws.get("s3")
        bucket = self.settings.bucket("curated")
        ids: list[str] = []
        for key in await _keys(s3, bucket, f"{TABLE_OF[source]}/v1/dt={day}/"):
            if key.endswith("_manifest.json"):
                manifest = json.loads(await _body(s3, bucket, key))
                for entry in manifest["entries"]:
                    part_key = entry["url"].split("/", 3)[3]
                    table = pq.read_table(io.BytesIO(await _body(s3, bucket, part_key)), columns=["event_id"])
                    ids += table.column("event_id").to_pylist()
        return Observed(ids=ids)

    def warehouse_ids(self, source: str, day: str) -> Observed | None:
        """Return the warehouse rows' ids of one day, or None while the loader holds the file."""
        try:
            with duckdb.connect(str(self.warehouse), read_only=True) as con:
                rows = con.execute(f"SELECT event_id FROM {TABLE_OF[source]} WHERE dt = ?", [day]).fetchall()
        except duckdb.IOException:
            return None
        except duckdb.CatalogException:
            return Observed(ids=[])  # the table does not exist before the first load
        return Observed(ids=[r[0] for r in rows])

    def traffic(self, day: str) -> Observed:
        """Return impressions + clicks of ``day`` summed over the load's ads, from the loader's traffic API."""
        total = 0
        with httpx.Client(timeout=10, headers=self.headers) as http:
            for ad in ADS:
                response = http.get(f"{self.loader_url}/v1/advertising/traffic/{ad}", params={"start": day, "end": day})
                response.raise_for_status()
                total += sum(d["impressions"] + d["clicks"] for d in response.json()["days"])
        return Observed(count=total)

    async def kinesis_ids(self, aws: AwsClients) -> set[str]:
        """Return every event id on the events stream."""
        records = await read_stream(await aws.get("kinesis"), self.settings.stream("events"))
        return {json.loads(r["Data"]).get("event_id") for r in records}


def day_strings(days: list[date]) -> list[str]:
    """Return ISO strings of ``days``."""
    return [d.isoformat() for d in days]
