"""Walking skeleton: beacons and events are accepted, archived per contract 1, streamed, and days get markers."""

from __future__ import annotations

import json

import orjson

from services.ingest.api import PIXEL
from shared.aws import AwsClients
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, archived_objects, archived_records, stream_records

CONTRACT_FIELDS = {
    "event_id",
    "type",
    "source",
    "event_time",
    "received_at",
    "client_ip_hash",
    "ad_id",
    "campaign_id",
    "placement",
    "user_id",
    "properties",
}


async def test_impression_pixel_answers_a_no_cache_gif_and_reaches_archive_and_stream(
    ingest: Ingest, aws: AwsClients
) -> None:
    response = await ingest.http.get(
        "/v1/beacons/impression",
        params={"ad_id": "ad-7", "campaign": "c-1", "placement": "top", "cookie_id": "u-9", "event_id": "imp-1"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL
    assert "no-store" in response.headers["cache-control"]

    records = await wait_until(lambda: archived_records(aws, ingest.settings), message="impression archived")
    [record] = records
    assert set(record) == CONTRACT_FIELDS
    assert record["event_id"] == "imp-1"
    assert (record["type"], record["source"]) == ("impression", "beacon")
    assert (record["ad_id"], record["campaign_id"], record["placement"], record["user_id"]) == (
        "ad-7",
        "c-1",
        "top",
        "u-9",
    )
    assert record["event_time"] == record["received_at"] and record["received_at"].endswith("Z")
    assert record["client_ip_hash"] and "127.0.0.1" not in json.dumps(record)

    streamed = await wait_until(lambda: stream_records(aws, ingest.settings), message="impression on the stream")
    assert [orjson.loads(item["data"]) for item in streamed] == [record]
    assert streamed[0]["partition_key"] == "ad-7"  # keyed by the ad: its events share a shard, in order


async def test_click_pixel_answers_204_when_asked(ingest: Ingest) -> None:
    response = await ingest.http.get("/v1/beacons/click", params={"ad_id": "ad-7", "response": "204"})
    assert response.status_code == 204
    assert response.content == b""
    assert "no-cache" in response.headers["cache-control"]


async def test_json_beacon_is_accepted_with_its_id(ingest: Ingest) -> None:
    response = await ingest.http.post("/v1/beacons/click", json={"ad_id": "ad-1", "event_id": "clk-9"})
    assert response.status_code == 202
    assert response.json() == {"event_id": "clk-9", "status": "accepted"}


async def test_archive_key_follows_event_time_partition_and_record_contract(ingest: Ingest, aws: AwsClients) -> None:
    event = {
        "type": "click",
        "event_id": "clk-1",
        "ad_id": "ad-3",
        "timestamp": "2026-11-20T13:45:10.250+01:00",
        "color": "blue",
    }
    response = await ingest.http.post("/v1/events", json=event, headers=ingest.auth())
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [{"index": 0, "event_id": "clk-1", "status": "accepted", "reason": None}]

    objects = await wait_until(lambda: archived_objects(aws, ingest.settings), message="click archived")
    [(key, [record])] = objects.items()
    assert key.startswith("beacon/dt=2026-11-20/hour=12/") and key.endswith(".json.gz")
    assert record["event_time"] == "2026-11-20T12:45:10.250Z"
    assert record["properties"] == {"color": "blue"}
    assert (record["campaign_id"], record["placement"], record["user_id"]) == (None, None, None)


async def test_meter_reads_keep_cloud_id_leading_zeros(ingest: Ingest, aws: AwsClients) -> None:
    reads = [
        {
            "cloud_id": "000123",
            "timestamp": "2026-11-24T23:59:58Z",
            "demand_kw": 1.5,
            "summation_delivered_kwh": 10.25,
            "summation_received_kwh": None,
            "raw": {"Demand": "0x0005dc"},
        }
    ]
    response = await ingest.http.post("/v1/meter-reads", json={"reads": reads}, headers=ingest.auth())
    assert response.status_code == 202, response.text

    records = await wait_until(
        lambda: archived_records(aws, ingest.settings, "meter_read/dt=2026-11-24/hour=23/"), message="read archived"
    )
    [record] = records
    assert record["type"] == record["source"] == "meter_read"
    assert record["cloud_id"] == "000123"
    assert record["demand_kw"] == 1.5
    assert (record["summation_delivered_kwh"], record["summation_received_kwh"]) == (10.25, None)
    assert record["raw"] == {"Demand": "0x0005dc"}


async def test_post_events_needs_a_key_with_ingest_write(ingest: Ingest) -> None:
    event = {"type": "impression", "ad_id": "a"}
    assert (await ingest.http.post("/v1/events", json=event)).status_code == 401
    forbidden = await ingest.http.post("/v1/events", json=event, headers=ingest.auth(ingest.read_key))
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    assert (await ingest.http.post("/v1/events", json=event, headers=ingest.auth())).status_code == 202


async def test_past_day_gets_its_complete_marker_with_counts_once_shipped(ingest: Ingest, aws: AwsClients) -> None:
    events = [
        {"type": "impression", "ad_id": "a", "timestamp": "2026-11-23T01:00:00Z"},
        {"type": "impression", "ad_id": "a", "timestamp": "2026-11-23T22:00:00Z"},
        {"type": "click", "ad_id": "a", "timestamp": "2026-11-23T22:00:01Z"},
    ]
    response = await ingest.http.post("/v1/events", json={"events": events}, headers=ingest.auth())
    assert response.json()["accepted"] == 3
    s3 = await aws.get("s3")
    bucket = ingest.settings.bucket("raw")

    async def _marker() -> dict | None:
        try:
            obj = await s3.get_object(Bucket=bucket, Key="beacon/dt=2026-11-23/_COMPLETE")
        except s3.exceptions.NoSuchKey:
            return None
        return json.loads(await obj["Body"].read())

    marker = await wait_until(_marker, message="_COMPLETE marker for 2026-11-23")
    assert {k: marker[k] for k in ("source", "dt", "events", "objects")} == {
        "source": "beacon",
        "dt": "2026-11-23",
        "events": 3,
        "objects": 2,
    }


async def test_today_gets_no_marker_within_the_grace_period(ingest: Ingest, aws: AwsClients) -> None:
    response = await ingest.http.get("/v1/beacons/impression", params={"ad_id": "a"})
    assert response.status_code == 200
    await wait_until(lambda: archived_records(aws, ingest.settings), message="today's impression archived")
    # One more full shipper pass after the archive write, then check no marker exists for today.
    await wait_until(lambda: _shipper_idle(ingest), message="shipper idle")
    s3 = await aws.get("s3")
    listing = await s3.list_objects_v2(Bucket=ingest.settings.bucket("raw"), Prefix="beacon/")
    assert not [item["Key"] for item in listing.get("Contents", []) if item["Key"].endswith("_COMPLETE")]


async def _shipper_idle(ingest: Ingest) -> bool:
    wiring = ingest.app.state.wiring
    return wiring.spool.bytes_used == 0 and wiring.shipper.healthy


async def test_readyz_checks_redis_database_and_the_spool_not_aws(ingest: Ingest, aws: AwsClients) -> None:
    async def _readyz(status: int) -> dict | None:
        response = await ingest.http.get("/readyz")
        return response.json() if response.status_code == status else None

    # Polled: on a loaded machine one check may exceed the readiness timeout once.
    ready = await wait_until(lambda: _readyz(200), message="ready")
    assert set(ready["checks"]) == {"redis", "database", "spool"}
    # Without the stream ingest still accepts into its spool, so it stays ready (tests/deploy covers a full spool).
    kinesis = await aws.get("kinesis")
    await kinesis.delete_stream(StreamName=ingest.settings.stream("events"))
    assert await wait_until(lambda: _readyz(200), message="still ready without the stream")
