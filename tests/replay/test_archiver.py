"""Archiving a Kinesis stream Headwater does not write: the route, the archiver process, and the query views."""

from __future__ import annotations

import asyncio
import gzip
import os
import secrets
import sys
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from argon2 import PasswordHasher

from services.replay.archiver import ArchiverSettings, ShardArchiver, write_due_markers
from services.replay.archives import state_key
from services.replay.settings import ReplaySettings
from shared.auth import ApiKey
from shared.aws import AwsClients
from shared.db import create_engine, session_factory
from tests.helpers import wait_until

SOURCE = "clickstream"


@pytest.fixture(scope="module")
def _admin_key() -> tuple[str, ApiKey]:
    key_id = secrets.token_hex(6)
    key = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(key_id=key_id, name="archives", scopes="jobs:admin read", key_hash=PasswordHasher().hash(key))
    return key, row


@pytest.fixture
async def admin(settings: ReplaySettings, _admin_key: tuple[str, ApiKey], client: httpx.AsyncClient) -> dict:
    key, row = _admin_key
    engine = create_engine(settings)
    async with session_factory(engine)() as session:
        session.add(ApiKey.model_validate(row.model_dump()))
        await session.commit()
    await engine.dispose()
    return {"Authorization": f"Bearer {key}"}


async def _foreign_stream(aws: AwsClients, name: str, shards: int = 2) -> None:
    kinesis = await aws.get("kinesis")
    await kinesis.create_stream(StreamName=name, ShardCount=shards)
    await wait_until(lambda: _active(kinesis, name), timeout=10, message="the foreign stream did not become ACTIVE")


async def _active(kinesis: Any, name: str) -> bool:
    summary = await kinesis.describe_stream_summary(StreamName=name)
    return summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"


async def _produce(aws: AwsClients, stream: str, count: int, start: int = 0) -> None:
    """A producer that is not Headwater: plain PutRecords, one call at a time (moto races on overlapping calls)."""
    kinesis = await aws.get("kinesis")
    for first in range(start, start + count, 500):
        records = [
            {"Data": orjson.dumps({"n": n, "page": f"/p/{n % 7}"}), "PartitionKey": f"user-{n % 97}"}
            for n in range(first, min(first + 500, start + count))
        ]
        response = await kinesis.put_records(StreamName=stream, Records=records)
        assert response["FailedRecordCount"] == 0


async def _archived_lines(aws: AwsClients, settings: ReplaySettings) -> list[dict]:
    s3 = await aws.get("s3")
    lines: list[dict] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=settings.bucket("raw"), Prefix=f"{SOURCE}/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".json.gz"):
                body = await (await s3.get_object(Bucket=settings.bucket("raw"), Key=item["Key"]))["Body"].read()
                lines += [orjson.loads(line) for line in gzip.decompress(body).splitlines()]
    return lines


async def _archiver_process(settings: ReplaySettings) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "HEADWATER_REDIS_URL": settings.redis_url,
        "HEADWATER_DATA_DIR": str(settings.data_dir),
        "HEADWATER_ENVIRONMENT": "test",
        "HEADWATER_RESOURCE_PREFIX": settings.resource_prefix,
        "HEADWATER_ARCHIVE_BATCH_RECORDS": "200",
        "HEADWATER_ARCHIVE_LEASE_TTL_S": "1.5",
        "HEADWATER_ARCHIVE_POLL_S": "0.1",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.replay.archiver",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _archived_count(client: httpx.AsyncClient, admin: dict) -> int:
    archives = (await client.get("/v1/archives", headers=admin)).json()["archives"]
    return sum(a["archived"] for a in archives)


async def test_a_killed_archiver_resumes_and_archives_each_record_exactly_once(
    client: httpx.AsyncClient, admin: dict, aws: AwsClients, settings: ReplaySettings
) -> None:
    stream = f"{settings.resource_prefix}-foreign-clicks"  # not one of Headwater's streams
    await _foreign_stream(aws, stream)
    await _produce(aws, stream, 10_000)
    response = await client.post("/v1/archives", json={"stream": stream, "source": SOURCE}, headers=admin)
    assert response.status_code == 202, response.text

    first = await _archiver_process(settings)
    try:
        await wait_until(
            lambda: _at_least(client, admin, 2000),
            timeout=60,
            interval=0.05,
            message="the first archiver never got going",
        )
    finally:
        first.kill()  # SIGKILL: no cleanup; its leases lapse
        await first.wait()
    at_kill = await _archived_count(client, admin)
    assert at_kill < 10_000, "the archiver finished before it was killed: the test proves nothing"

    second = await _archiver_process(settings)
    try:
        await wait_until(
            lambda: _at_least(client, admin, 10_000), timeout=90, interval=0.2, message="the archive did not complete"
        )
    finally:
        second.terminate()
        await second.wait()

    lines = await _archived_lines(aws, settings)
    sequences = Counter((r["kinesis"]["shard_id"], r["kinesis"]["sequence_number"]) for r in lines)
    assert len(lines) == 10_000 and max(sequences.values()) == 1
    assert sorted(r["properties"]["n"] for r in lines) == list(range(10_000))
    assert {r["source"] for r in lines} == {SOURCE}
    archive = (await client.get("/v1/archives", headers=admin)).json()["archives"][0]
    assert archive["archived"] == 10_000 and len(archive["shards"]) == 2

    # The query views see the stream: the archive once, the live tail once, all_events de-duplicated.
    sql = (
        f"SELECT (SELECT count(*) FROM raw_events WHERE source = '{SOURCE}') AS archived,"
        f" (SELECT count(*) FROM live_events WHERE source = '{SOURCE}') AS live,"
        f" (SELECT count(*) FROM all_events WHERE source = '{SOURCE}') AS total,"
        f" (SELECT count(DISTINCT event_id) FROM all_events WHERE source = '{SOURCE}') AS ids"
    )
    answer = await client.post("/v1/query", json={"sql": sql})
    assert answer.status_code == 200, answer.text
    assert orjson.loads(answer.content.splitlines()[0]) == {
        "archived": 10_000,
        "live": 10_000,
        "total": 10_000,
        "ids": 10_000,
    }


async def _at_least(client: httpx.AsyncClient, admin: dict, count: int) -> bool:
    return await _archived_count(client, admin) >= count


class _CrashAfterPut:
    """S3 whose put_object writes, then fails: an archiver dying between its objects and its checkpoint."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    async def put_object(self, **kwargs: Any) -> None:
        await self._s3.put_object(**kwargs)
        raise RuntimeError("killed after writing")


async def test_a_batch_written_but_not_checkpointed_is_rewritten_not_duplicated(
    aws: AwsClients, settings: ReplaySettings, redis: Any
) -> None:
    stream = f"{settings.resource_prefix}-foreign-one"
    await _foreign_stream(aws, stream, shards=1)
    await _produce(aws, stream, 250)
    await redis.hset(
        f"{settings.resource_prefix}:replay:archives",
        stream,
        orjson.dumps({"source": SOURCE, "created_at": "2026-11-30T00:00:00Z"}),
    )
    archiver_settings = ArchiverSettings(**settings.model_dump(), archive_batch_records=100)
    kinesis, s3 = await aws.get("kinesis"), await aws.get("s3")
    shard = "shardId-000000000000"

    def _worker(store: Any, batch: int = 100) -> ShardArchiver:
        return ShardArchiver(
            settings=archiver_settings.model_copy(update={"archive_batch_records": batch}),
            redis=redis,
            kinesis=kinesis,
            s3=store,
            stream=stream,
            source=SOURCE,
            shard=shard,
        )

    crashing = _worker(_CrashAfterPut(s3))
    assert await crashing.acquire()
    with pytest.raises(RuntimeError):
        await crashing.step()
    state = await redis.hgetall(state_key(settings.resource_prefix, stream))
    assert f"{shard}:intent".encode() in state and f"{shard}:checkpoint".encode() not in state
    written = await _archived_lines(aws, settings)
    assert len(written) == 100

    await redis.delete(crashing.lease)  # its lease lapsed
    # Resumed with larger batches: the pending batch is still re-read as it was (the same keys, same counts).
    resumed = _worker(s3, batch=150)
    assert await resumed.acquire()
    counts = [await resumed.step() for _ in range(3)]
    assert counts == [100, 150, 0]
    lines = await _archived_lines(aws, settings)
    assert sorted(r["properties"]["n"] for r in lines) == list(range(250))


async def test_archive_route_refuses_unknown_own_and_conflicting_streams(
    client: httpx.AsyncClient, admin: dict, aws: AwsClients, settings: ReplaySettings
) -> None:
    stream = f"{settings.resource_prefix}-foreign-x"
    await _foreign_stream(aws, stream, shards=1)
    missing = await client.post("/v1/archives", json={"stream": "nope", "source": SOURCE}, headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    own = await client.post("/v1/archives", json={"stream": settings.stream("events"), "source": SOURCE}, headers=admin)
    assert own.status_code == 422
    assert own.json()["error"]["details"] == [{"field": "stream", "reason": "headwater_stream"}]
    # The default test key has read and replay scopes, not jobs:admin.
    forbidden = await client.post("/v1/archives", json={"stream": stream, "source": SOURCE})
    assert forbidden.status_code == 403
    bad = await client.post("/v1/archives", json={"stream": stream, "source": "Not A Source"}, headers=admin)
    assert bad.status_code == 422
    huge = await client.post(
        "/v1/archives",
        content=b'{"stream": "' + b"x" * 5000 + b'"}',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    first = await client.post("/v1/archives", json={"stream": stream, "source": SOURCE}, headers=admin)
    again = await client.post("/v1/archives", json={"stream": stream, "source": SOURCE}, headers=admin)
    assert first.status_code == again.status_code == 202
    assert again.json()["created_at"] == first.json()["created_at"]
    other = await client.post("/v1/archives", json={"stream": stream, "source": "elsewhere"}, headers=admin)
    assert other.status_code == 409


async def test_a_day_is_marked_once_every_open_shard_has_archived_past_it(
    aws: AwsClients, settings: ReplaySettings, redis: Any
) -> None:
    archiver_settings = ArchiverSettings(**settings.model_dump(), archive_marker_grace_s=60)
    s3 = await aws.get("s3")
    stream, state = "foreign", state_key(settings.resource_prefix, "foreign")
    await s3.put_object(Bucket=settings.bucket("raw"), Key=f"{SOURCE}/dt=2026-11-24/hour=23/k-0-1-n7.json.gz", Body=b"")
    await redis.sadd(f"{state}:days", "2026-11-24")
    end = 1795564800000  # 2026-11-25T00:00:00Z in ms
    await redis.hset(state, mapping={"a:watermark": end + 61_000, "b:watermark": end + 30_000, "c:closed": "1"})

    async def _due() -> list[str]:
        return await write_due_markers(
            settings=archiver_settings, redis=redis, s3=s3, stream=stream, source=SOURCE, shards=["a", "b", "c"]
        )

    assert await _due() == []  # shard b is not past the grace yet
    await redis.hset(state, "b:watermark", end + 60_000)
    assert await _due() == [f"{SOURCE}/dt=2026-11-24/_COMPLETE"]
    body = await (await s3.get_object(Bucket=settings.bucket("raw"), Key=f"{SOURCE}/dt=2026-11-24/_COMPLETE"))[
        "Body"
    ].read()
    assert orjson.loads(body) == {"source": SOURCE, "dt": "2026-11-24", "events": 7, "objects": 1, "stream": stream}
    assert await _due() == []  # written once
