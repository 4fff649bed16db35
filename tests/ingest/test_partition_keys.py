"""Kinesis records are keyed by entity: a meter's reads (an ad's events) all land on one shard, in order."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from shared.aws import AwsClients
from shared.kinesis import list_shard_ids, read_shard
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, bootstrap_ingest, make_keys, serve


async def _by_shard(aws: AwsClients, stream: str) -> dict[str, list[dict[str, Any]]]:
    kinesis = await aws.get("kinesis")
    return {shard: await read_shard(kinesis, stream, shard) for shard in await list_shard_ids(kinesis, stream)}


async def test_each_meters_reads_land_on_one_shard_in_order(ingest: Ingest, aws: AwsClients) -> None:
    meters = [f"00{n:04x}" for n in range(8)]
    for second in range(5):
        reads = [
            {"cloud_id": cloud_id, "demand_kw": float(second), "timestamp": f"2026-11-25T12:00:0{second}Z"}
            for cloud_id in meters
        ]
        answer = await ingest.http.post("/v1/meter-reads", json={"reads": reads}, headers=ingest.auth())
        assert answer.status_code == 202, answer.text
    stream = ingest.settings.stream("events")

    async def _all() -> bool:
        return sum(len(records) for records in (await _by_shard(aws, stream)).values()) >= 40

    await wait_until(_all, timeout=30, message="meter reads did not reach the stream")
    shards_of: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[float]] = defaultdict(list)
    for shard, records in (await _by_shard(aws, stream)).items():
        for record in records:
            data = orjson.loads(record["Data"])
            assert record["PartitionKey"] == data["cloud_id"]
            shards_of[data["cloud_id"]].add(shard)
            order[data["cloud_id"]].append(data["demand_kw"])
    assert set(shards_of) == set(meters)
    assert all(len(shards) == 1 for shards in shards_of.values()), shards_of
    assert len(set().union(*shards_of.values())) == 2  # the meters do spread over both shards
    assert all(values == [0.0, 1.0, 2.0, 3.0, 4.0] for values in order.values()), order


async def test_the_partition_key_field_is_configurable_per_source(ingest_settings_factory: Any) -> None:
    settings = ingest_settings_factory(partition_keys={"beacon": "campaign_id"})
    await bootstrap_ingest(settings)
    write, _ = await make_keys(settings)
    import httpx

    from services.ingest.app import create_app

    events = [
        {"type": "impression", "ad_id": "ad-1", "campaign_id": "c-1"},
        {"type": "click", "ad_id": "ad-2"},  # no campaign: keyed by its event id
        {"type": "meter_read", "cloud_id": "00ab", "demand_kw": 1.0},  # not configured: keyed by its event id
    ]
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http, AwsClients(settings) as aws:
        answer = await http.post("/v1/events", json=events, headers={"Authorization": f"Bearer {write}"})
        assert answer.status_code == 202, answer.text
        ids = [result["event_id"] for result in answer.json()["results"]]
        stream = settings.stream("events")

        async def _three() -> bool:
            return sum(len(r) for r in (await _by_shard(aws, stream)).values()) >= 3

        await wait_until(_three, timeout=30, message="events did not reach the stream")
        keys = {
            orjson.loads(r["Data"])["event_id"]: r["PartitionKey"]
            for records in (await _by_shard(aws, stream)).values()
            for r in records
        }
    assert keys == {ids[0]: "c-1", ids[1]: ids[1], ids[2]: ids[2]}
