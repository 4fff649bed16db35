"""A real arq worker process killed mid-replay: another worker recovers the job and finishes it without re-sending
more than the batch in flight."""

from __future__ import annotations

import asyncio
import os
import sys

from services.replay.progress import ProgressStore
from tests.helpers import wait_until
from tests.replay.conftest import make_event, put_archive, read_stream


async def _worker(settings) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "HEADWATER_REDIS_URL": settings.redis_url,
        "HEADWATER_DATABASE_URL": settings.database_url,
        "HEADWATER_DATA_DIR": str(settings.data_dir),
        "HEADWATER_ENVIRONMENT": "test",
        "HEADWATER_RESOURCE_PREFIX": settings.resource_prefix,
        "HEADWATER_LEASE_TTL_S": "1.5",
        "HEADWATER_RECOVERY_INTERVAL_S": "1",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arq",
        "services.replay.worker.WorkerSettings",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def test_a_killed_worker_process_is_recovered_by_another(client, aws, settings, redis) -> None:
    events = [make_event(f"w{n:03d}", f"2026-11-24T12:{n // 60:02d}:{n % 60:02d}Z") for n in range(120)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    job_id = (await client.post("/v1/replays", json={"selection": {}, "rate_limit": 40})).json()["id"]
    store = ProgressStore(redis, settings.resource_prefix)

    first = await _worker(settings)
    try:

        async def _started() -> bool:
            return (await store.read(job_id)).get("emitted", 0) >= 30

        await wait_until(_started, timeout=40, message="the first worker never emitted")
    finally:
        first.kill()  # SIGKILL: no cleanup, the lease is left to lapse
        await first.wait()

    second = await _worker(settings)
    try:

        async def _done() -> bool:
            return (await client.get(f"/v1/replays/{job_id}")).json()["state"] == "succeeded"

        await wait_until(_done, timeout=60, interval=0.3, message="the job was not recovered")
    finally:
        second.terminate()
        await second.wait()

    job = (await client.get(f"/v1/replays/{job_id}")).json()
    ids = [r["data"]["event_id"] for r in await read_stream(await aws.get("kinesis"), settings.stream("replay"))]
    assert set(ids) == {e["event_id"] for e in events}
    assert len(ids) - len(set(ids)) <= 4  # rate 40/s -> batches of 4
    assert job["summary"]["resumed_from"] >= 30
