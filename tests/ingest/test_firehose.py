"""``archive: firehose``: events reach the raw archive through a real (emulated) Firehose delivery stream.

The moto server really delivers PutRecordBatch to S3. What it does not do (prefix expressions, gzip, buffering) is
shown by the request Headwater sends and by the object the emulator writes.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from services.ingest.app import create_app
from services.ingest.firehose import FirehoseArchive, firehose_put, put_firehose_records, settled_name
from services.ingest.markers import DayMarkers
from services.ingest.settings import IngestSettings
from services.replay.catalog import open_sandbox
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.bootstrap_firehose import ensure_firehose
from shared.firehose_layout import FIREHOSE_LANDING_PREFIX, delivery_stream_name, delivery_stream_request
from shared.kinesis_put import Entry
from tests.helpers import wait_until
from tests.ingest.conftest import archived_objects, bootstrap_ingest, make_keys, serve


async def _landed(s3: Any, settings: IngestSettings) -> dict[str, bytes]:
    listing = await s3.list_objects_v2(Bucket=settings.bucket("raw"), Prefix=FIREHOSE_LANDING_PREFIX)
    found = {}
    for item in listing.get("Contents", []):
        found[item["Key"]] = await (await s3.get_object(Bucket=settings.bucket("raw"), Key=item["Key"]))["Body"].read()
    return found


async def test_bootstrap_asks_for_hive_prefixes_and_the_emulator_writes_them_literally(
    ingest_settings: IngestSettings, aws: AwsClients
) -> None:
    firehose, s3 = await aws.get("firehose"), await aws.get("s3")
    assert await ensure_firehose(firehose, ingest_settings)
    assert await ensure_firehose(firehose, ingest_settings)  # idempotent
    sent = delivery_stream_request(ingest_settings, "arn:aws:iam::123456789012:role/hw-firehose")
    destination = sent["ExtendedS3DestinationConfiguration"]
    # What real Firehose is asked for: Hive-style arrival-hour prefixes, gzip, 64 MiB / 60 s buffers.
    assert destination["Prefix"] == "_firehose/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    assert (
        destination["ErrorOutputPrefix"] == "_firehose-errors/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"
    )
    assert destination["CompressionFormat"] == "GZIP"
    assert destination["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 60}
    assert destination["BucketARN"] == f"arn:aws:s3:::{ingest_settings.bucket('raw')}"
    described = await firehose.describe_delivery_stream(DeliveryStreamName=delivery_stream_name(ingest_settings))
    stored = described["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert stored["Prefix"] == destination["Prefix"]

    put = firehose_put(firehose, delivery_stream_name(ingest_settings))
    await put_firehose_records(
        put, delivery_stream=delivery_stream_name(ingest_settings), lines=[b'{"a":1}', b'{"a":2}'], max_attempts=2
    )
    landed = await _landed(s3, ingest_settings)
    assert len(landed) == 1
    key, body = next(iter(landed.items()))
    # The emulator: the prefix as written (no expression evaluated), then its own YYYY/MM/DD/HH/, no gzip.
    assert re.fullmatch(
        re.escape(destination["Prefix"]) + r"\d{4}/\d{2}/\d{2}/\d{2}/hw-raw-archive-\d+-[\d-]{19}-[0-9a-f-]{36}", key
    ), key
    assert body == b'{"a":1}\n{"a":2}\n'


async def test_partial_batch_failures_are_retried_until_every_record_lands_once(
    ingest_settings: IngestSettings, aws: AwsClients
) -> None:
    """The emulator never fails a record, so the first call's failures are injected: records 1 and 3 are held
    back from the real call and reported failed (ServiceUnavailableException), as real Firehose reports them."""
    firehose, s3 = await aws.get("firehose"), await aws.get("s3")
    await ensure_firehose(firehose, ingest_settings)
    real = firehose_put(firehose, delivery_stream_name(ingest_settings))
    calls: list[int] = []

    async def flaky(entries: list[Entry]) -> dict[int, str]:
        calls.append(len(entries))
        if len(calls) > 1:
            return await real(entries)
        held = {1, 3}
        sent = [i for i in range(len(entries)) if i not in held]
        failed = await real([entries[i] for i in sent])
        return {**{sent[i]: code for i, code in failed.items()}, **dict.fromkeys(held, "ServiceUnavailableException")}

    lines = [orjson.dumps({"n": n}) for n in range(5)]
    await put_firehose_records(flaky, delivery_stream="x", lines=lines, max_attempts=3)
    assert calls == [5, 2]
    landed = b"".join((await _landed(s3, ingest_settings)).values())
    assert sorted(orjson.loads(line)["n"] for line in landed.splitlines()) == [0, 1, 2, 3, 4]


async def test_firehose_source_lands_in_the_raw_layout_and_replay_reads_it(
    ingest_settings_factory: Callable[..., IngestSettings], aws_endpoint: str, make_settings: Callable[..., Any]
) -> None:
    settings = ingest_settings_factory(archive_paths={"beacon": "firehose"}, firehose_settle_interval_s=0.2)
    await bootstrap_ingest(settings)
    write, _ = await make_keys(settings)
    async with AwsClients(settings) as aws:
        assert await ensure_firehose(await aws.get("firehose"), settings)
        app = create_app(settings)
        events = [
            {"type": "impression", "ad_id": "a1", "event_id": f"fh-{n}", "event_time": "2026-11-24T10:15:00Z"}
            for n in range(30)
        ] + [{"type": "meter_read", "cloud_id": "c1", "demand_kw": 1.5, "event_id": "direct-1"}]
        async with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as http:
                response = await http.post("/v1/events", json=events, headers={"Authorization": f"Bearer {write}"})
                assert response.status_code == 202, response.text
                assert response.json()["accepted"] == 31

            async def _archived() -> dict[str, list[dict]] | None:
                found = await archived_objects(aws, settings, "beacon/")
                return found if sum(map(len, found.values())) >= 30 else None

            objects = await wait_until(_archived, timeout=30, message="Firehose records settled into the archive")
            direct = await wait_until(lambda: archived_objects(aws, settings, "meter_read/"), timeout=20)
        s3 = await aws.get("s3")
        # Settled: the landing area is emptied, the object is named after the landed key, in contract 1's layout.
        assert await _landed(s3, settings) == {}
        [(key, records)] = objects.items()
        assert re.fullmatch(r"beacon/dt=2026-11-24/hour=10/fh-[0-9a-f]{24}-n30\.json\.gz", key), key
        assert sorted(r["event_id"] for r in records) == sorted(f"fh-{n}" for n in range(30))
        # The direct source still writes its own objects, named after the spool segment.
        assert [r["event_id"] for recs in direct.values() for r in recs] == ["direct-1"]
        assert all("/fh-" not in k for k in direct)

        replay = make_settings(ReplaySettings, data_dir=settings.data_dir)
        sandbox = await open_sandbox(
            settings=replay, aws=aws, sql="SELECT event_id FROM raw_events WHERE source = 'beacon'"
        )
        try:
            rows = sandbox.con.sql(
                "SELECT event_id, dt, hour FROM raw_events WHERE source = 'beacon' ORDER BY event_id"
            ).fetchall()
        finally:
            sandbox.close()
        assert len(rows) == 30 and {(str(r[1]), r[2]) for r in rows} == {("2026-11-24", 10)}


async def test_settling_the_same_landed_object_twice_overwrites(
    ingest_settings: IngestSettings, aws: AwsClients
) -> None:
    """A crash between writing the settled objects and deleting the landed one: the object is settled again."""
    s3 = await aws.get("s3")
    settings = ingest_settings.model_copy(update={"archive_paths": {"beacon": "firehose"}})
    redis = Redis.from_url(settings.redis_url)
    markers = DayMarkers(redis=redis, prefix="t", bucket=settings.bucket("raw"), grace_s=0, instance_id="i")
    archive = FirehoseArchive(settings=settings, markers=markers, name="t")
    lines = [
        orjson.dumps({"event_id": f"e{n}", "source": "beacon", "event_time": f"2026-11-24T{10 + n % 2:02d}:00:00Z"})
        for n in range(4)
    ]
    landed_key = f"{FIREHOSE_LANDING_PREFIX}2026/11/24/10/x-1"
    body = gzip.compress(b"\n".join(lines) + b"\nnot json\n")
    for _ in range(2):
        await s3.put_object(Bucket=settings.bucket("raw"), Key=landed_key, Body=body)
        assert await archive.settle(s3) == 1
    await redis.aclose()
    objects = await archived_objects(aws, settings, "beacon/")
    name = settled_name(landed_key)
    assert sorted(objects) == [
        f"beacon/dt=2026-11-24/hour=10/{name}-n2.json.gz",
        f"beacon/dt=2026-11-24/hour=11/{name}-n2.json.gz",
    ]
    assert sorted(r["event_id"] for recs in objects.values() for r in recs) == ["e0", "e1", "e2", "e3"]
    bad = await s3.list_objects_v2(Bucket=settings.bucket("bad-rows"))
    assert len(bad.get("Contents", [])) == 1  # the unreadable line, kept (same key both times)


async def test_a_day_put_to_firehose_gets_no_marker_until_it_can_have_landed(
    ingest_settings: IngestSettings, aws: AwsClients
) -> None:
    firehose, s3 = await aws.get("firehose"), await aws.get("s3")
    await ensure_firehose(firehose, ingest_settings)
    settings = ingest_settings.model_copy(update={"archive_paths": {"beacon": "firehose"}})
    redis = Redis.from_url(settings.redis_url)
    try:
        markers = DayMarkers(redis=redis, prefix="t", bucket=settings.bucket("raw"), grace_s=0, instance_id="i")
        day = ("beacon", "2026-11-24")
        await markers.note_shipped({day})  # the day has archived events already (say, an earlier settle)
        archive = FirehoseArchive(settings=settings, markers=markers, name="t")
        line = orjson.dumps({"event_id": "late", "source": "beacon", "event_time": "2026-11-24T23:59:00Z"})
        await archive.put(firehose, [line], {day})
        assert await markers.write_due(s3, local_pending=set()) == []  # held: the record is still in Firehose
        await redis.delete("t:ingest:pending:firehose-t")  # the hold lapses (its TTL covers buffering + settling)
        assert await markers.write_due(s3, local_pending=set()) == ["beacon/dt=2026-11-24/_COMPLETE"]
    finally:
        await redis.aclose()
