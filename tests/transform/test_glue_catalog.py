"""The Glue Data Catalog after transform publishes: tables, partitions and column evolution, read back from the
moto server's Glue (a real control plane: it stores and answers what was registered)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from services.transform.builtin_schemas import AD_EVENTS_V1
from services.transform.glue_catalog import register_partition
from services.transform.settings import TransformSettings
from shared.aws import AwsClients
from shared.contracts import CuratedPartition
from shared.schemas import parse_schema_yaml
from tests.transform.sample import DT, good_beacons, jsonl, put_raw

DB = "hw_curated"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
AD_EVENTS_V2 = AD_EVENTS_V1.replace("version: 1", "version: 2").replace(
    "  - {name: dt,", "  - {name: campaign_name, source: properties.campaign_name, type: varchar(256)}\n  - {name: dt,"
)
V1_COLUMNS = ["event_id", "event_type", "ad_id", "campaign_id", "placement", "user_id", "event_time", "received_at"]


@pytest.fixture
async def glue(settings: TransformSettings) -> Any:
    async with AwsClients(settings) as clients:
        yield await clients.get("glue")


async def _transform(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    worker: Callable[[], Any],
    raw: str,
    version: int = 1,
    **extra: Any,
) -> list[dict[str, Any]]:
    body = {"table": "ad_events", "version": version, "source_path": f"s3://{raw}/beacon/dt={{dt}}/", "dt": DT, **extra}
    created = await client.post("/v1/transforms", json=body, headers=headers)
    assert created.status_code == 202, created.text
    await worker()
    runs = [(await client.get(f"/v1/transforms/{i['id']}", headers=headers)).json() for i in created.json()["items"]]
    assert [r["state"] for r in runs] == ["succeeded"] * len(runs), runs
    return runs


async def _partitions(glue: Any, table: str) -> list[dict[str, Any]]:
    return sorted(
        (await glue.get_partitions(DatabaseName=DB, TableName=table))["Partitions"], key=lambda p: p["Values"]
    )


async def test_a_published_partition_is_registered_with_its_table(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    glue: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw, curated = settings.bucket("raw"), settings.bucket("curated")
    await put_raw(s3, raw, f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(good_beacons()))

    await _transform(app_client, admin_headers, burst_worker, raw)

    table = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1"))["Table"]
    storage = table["StorageDescriptor"]
    assert [c["Name"] for c in storage["Columns"]] == V1_COLUMNS
    assert {c["Name"]: c["Type"] for c in storage["Columns"]}["event_time"] == "timestamp"
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "date"}]
    assert storage["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    assert storage["InputFormat"].endswith("MapredParquetInputFormat")
    assert storage["Location"] == f"s3://{curated}/ad_events/v1/"
    assert table["TableType"] == "EXTERNAL_TABLE"
    [partition] = await _partitions(glue, "ad_events_v1")
    assert partition["Values"] == [DT]
    location = partition["StorageDescriptor"]["Location"]
    assert location == f"s3://{curated}/ad_events/v1/dt={DT}/"
    # What the catalog says is what the files hold: the columns of the published part, dt only in the path.
    part = await s3.get_object(Bucket=curated, Key=f"ad_events/v1/dt={DT}/part-00000.parquet")
    file_schema = pq.read_schema(io.BytesIO(await part["Body"].read()))
    assert file_schema.names == [c["Name"] for c in partition["StorageDescriptor"]["Columns"]]
    evolving = await _partitions(glue, "ad_events")
    assert [p["Values"] for p in evolving] == [[DT, "1"]] and evolving[0]["StorageDescriptor"]["Location"] == location


async def test_a_rerun_changes_nothing_in_the_catalog(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    glue: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw = settings.bucket("raw")
    await put_raw(s3, raw, f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(good_beacons()))
    await _transform(app_client, admin_headers, burst_worker, raw)
    before = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1"))["Table"]

    await _transform(app_client, admin_headers, burst_worker, raw)

    after = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1"))["Table"]
    assert after["VersionId"] == before["VersionId"]  # no update_table: nothing differed
    assert [p["Values"] for p in await _partitions(glue, "ad_events_v1")] == [[DT]]
    assert [p["Values"] for p in await _partitions(glue, "ad_events")] == [[DT, "1"]]
    databases = (await glue.get_databases())["DatabaseList"]
    assert [d["Name"] for d in databases] == [DB]


async def test_a_new_schema_version_adds_its_columns_to_the_evolving_table(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    glue: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw, curated = settings.bucket("raw"), settings.bucket("curated")
    await put_raw(s3, raw, f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(good_beacons()))
    await _transform(app_client, admin_headers, burst_worker, raw)
    registered = await app_client.post(
        "/v1/schemas", content=AD_EVENTS_V2, headers={**admin_headers, "Content-Type": "application/yaml"}
    )
    assert registered.status_code in (200, 201), registered.text

    await _transform(app_client, admin_headers, burst_worker, raw, version=2)

    v1 = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1"))["Table"]
    v2 = (await glue.get_table(DatabaseName=DB, Name="ad_events_v2"))["Table"]
    evolving = (await glue.get_table(DatabaseName=DB, Name="ad_events"))["Table"]
    assert [c["Name"] for c in v1["StorageDescriptor"]["Columns"]] == V1_COLUMNS
    assert [c["Name"] for c in v2["StorageDescriptor"]["Columns"]] == [*V1_COLUMNS, "campaign_name"]
    assert [c["Name"] for c in evolving["StorageDescriptor"]["Columns"]] == [*V1_COLUMNS, "campaign_name"]
    assert evolving["PartitionKeys"] == [{"Name": "dt", "Type": "date"}, {"Name": "schema_version", "Type": "int"}]
    partitions = await _partitions(glue, "ad_events")
    assert [p["Values"] for p in partitions] == [[DT, "1"], [DT, "2"]]
    # Each partition keeps its own version's columns and location: v1's files have no campaign_name.
    assert [len(p["StorageDescriptor"]["Columns"]) for p in partitions] == [8, 9]
    assert partitions[1]["StorageDescriptor"]["Location"] == f"s3://{curated}/ad_events/v2/dt={DT}/"
    versions = (await glue.get_table_versions(DatabaseName=DB, TableName="ad_events"))["TableVersions"]
    assert len(versions) == 2  # created by v1, updated once by v2


async def test_an_hour_run_goes_to_the_hourly_table(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    glue: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw, curated = settings.bucket("raw"), settings.bucket("curated")
    await put_raw(s3, raw, f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(good_beacons()))

    await _transform(app_client, admin_headers, burst_worker, raw, hour=10)

    table = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1_hourly"))["Table"]
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "date"}, {"Name": "hour", "Type": "int"}]
    [partition] = await _partitions(glue, "ad_events_v1_hourly")
    assert partition["Values"] == [DT, "10"]
    assert partition["StorageDescriptor"]["Location"] == f"s3://{curated}/ad_events/v1/dt={DT}/hour=10/"
    tables = {t["Name"] for t in (await glue.get_tables(DatabaseName=DB))["TableList"]}
    assert tables == {"ad_events_v1_hourly"}  # an hour is not a day: the daily tables are untouched


async def test_orc_output_is_registered_with_the_orc_serde(settings: TransformSettings, glue: Any) -> None:
    schema = parse_schema_yaml(AD_EVENTS_V1)
    partition = CuratedPartition("ad_events", 1, date.fromisoformat(DT))

    await register_partition(glue, settings, schema, partition, "orc")

    table = (await glue.get_table(DatabaseName=DB, Name="ad_events_v1"))["Table"]
    storage = table["StorageDescriptor"]
    assert storage["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.orc.OrcSerde"
    assert table["Parameters"]["orc.column.index.access"] == "false"
    [stored] = await _partitions(glue, "ad_events_v1")
    assert stored["StorageDescriptor"]["InputFormat"] == "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat"


async def test_with_the_catalog_off_nothing_is_registered(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    s3: Any,
    glue: Any,
    settings: TransformSettings,
    burst_worker: Callable[[], Any],
) -> None:
    raw = settings.bucket("raw")
    await put_raw(s3, raw, f"beacon/dt={DT}/hour=10/a.json.gz", jsonl(good_beacons()))
    settings.glue_catalog = False  # the worker reads this settings object

    await _transform(app_client, admin_headers, burst_worker, raw)

    assert (await glue.get_databases())["DatabaseList"] == []
