"""A replay while live events for the same keys keep arriving: the consumer ends with the newest value per key."""

from __future__ import annotations

import asyncio

import orjson

from headwater.consumer import LatestByKey
from services.replay.progress import ProgressStore
from tests.helpers import wait_until
from tests.replay.conftest import make_event, put_archive


async def _read_raw(kinesis, stream: str) -> list[tuple]:
    """Return (arrival, sequence, data) of every record of ``stream``."""
    out = []
    for shard in (await kinesis.list_shards(StreamName=stream))["Shards"]:
        it = (
            await kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while it:
            page = await kinesis.get_records(ShardIterator=it, Limit=10_000)
            out.extend(
                (r["ApproximateArrivalTimestamp"], r["SequenceNumber"], orjson.loads(r["Data"]))
                for r in page["Records"]
            )
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return out


async def test_consumer_keeps_the_newest_value_per_key_during_a_replay(
    client, aws, settings, redis, run_worker
) -> None:
    archived = []
    for k in range(25):
        archived.append(make_event(f"a-{k}-1", "2026-11-24T09:00:00Z", ad_id=f"ad-{k}", properties={"value": "old-1"}))
        archived.append(make_event(f"a-{k}-2", "2026-11-24T10:00:00Z", ad_id=f"ad-{k}", properties={"value": "old-2"}))
    await put_archive(await aws.get("s3"), settings.bucket("raw"), archived)
    kinesis = await aws.get("kinesis")
    store = ProgressStore(redis, settings.resource_prefix)
    body = {"selection": {"sources": ["beacon"]}, "compact": True, "key": "ad_id", "rate_limit": 20}
    job_id = (await client.post("/v1/replays", json=body)).json()["id"]

    async def live_producer() -> None:
        for round_, threshold in ((1, 5), (2, 15)):

            async def _emitted(t: int = threshold) -> bool:
                return (await store.read(job_id)).get("emitted", 0) >= t

            await wait_until(_emitted, timeout=20, message=f"replay did not reach {threshold}")
            events = [
                make_event(
                    f"live-{k}-{round_}",
                    f"2026-11-25T0{round_}:00:00Z",
                    ad_id=f"ad-{k}",
                    properties={"value": f"new-{round_}"},
                )
                for k in range(20)
            ]
            # A late live event older than the archive's newest for ad-21: it must not win.
            events.append(
                make_event(f"late-{round_}", "2026-11-24T09:30:00Z", ad_id="ad-21", properties={"value": "late"})
            )
            await kinesis.put_records(
                StreamName=settings.stream("events"),
                Records=[{"Data": orjson.dumps(e), "PartitionKey": e["event_id"]} for e in events],
            )

    await asyncio.gather(run_worker(), live_producer())
    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "succeeded" and job["progress"]["emitted"] == 25

    live = await _read_raw(kinesis, settings.stream("events"))
    replayed = await _read_raw(kinesis, settings.stream("replay"))
    expected = {f"ad-{k}": "new-2" for k in range(20)} | {f"ad-{k}": "old-2" for k in range(20, 25)}

    arrival_order = sorted([("live", *r) for r in live] + [("replay", *r) for r in replayed], key=lambda r: r[1])
    adversarial = [("live", *r) for r in live] + [("replay", *r) for r in replayed]
    replay_first = [("replay", *r) for r in replayed] + [("live", *r) for r in live]
    for order in (arrival_order, adversarial, replay_first):
        consumer = LatestByKey(key="ad_id")
        for origin, _arrival, sequence, data in order:
            consumer.apply(data, sequence_number=sequence if origin == "live" else None)
        assert {k: r["properties"]["value"] for k, r in consumer.records.items()} == expected


def test_force_overwrite_lets_a_replayed_record_win_and_ties_keep_the_held_one() -> None:
    consumer = LatestByKey(key="id")
    assert consumer.apply({"id": "x", "event_time": "2026-11-25T00:00:00Z", "v": 1}, sequence_number="5")
    old = {"id": "x", "v": 0, "_replay": {"original_timestamp": "2026-11-24T00:00:00Z", "original_sequence": None}}
    assert not consumer.apply(old)
    assert not consumer.apply({"id": "x", "event_time": "2026-11-25T00:00:00Z", "v": 2}, sequence_number="5")
    assert consumer.apply({"id": "x", "event_time": "2026-11-25T00:00:00Z", "v": 3}, sequence_number="6")
    forced = {**old, "_replay": {**old["_replay"], "force_overwrite": True}}
    assert consumer.apply(forced)
    assert consumer.records["x"]["v"] == 0
