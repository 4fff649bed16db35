"""Replay fixtures: bootstrapped emulator, the app over ASGI with its lifespan, an arq burst worker, archive data."""

from __future__ import annotations

import asyncio
import gzip
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from argon2 import PasswordHasher
from arq.worker import Worker

import services.replay.models  # noqa: F401  (registers the replay tables)
from services.replay.app import create_app
from services.replay.settings import ReplaySettings
from services.replay.worker import shutdown, startup, worker_functions
from shared.auth import ApiKey
from shared.aws import AwsClients
from shared.bootstrap import ensure_streams
from shared.db import create_engine, create_tables, session_factory
from shared.kinesis import read_stream as read_stream_records
from shared.redis import arq_redis_settings
from tests.helpers import free_port, wait_until


def make_event(event_id: str, event_time: str, *, type: str = "impression", ad_id: str = "ad-1", **extra: Any) -> dict:
    """Return an archived event per contract 1."""
    source = "beacon" if type in ("impression", "click") else type
    event = {
        "event_id": event_id,
        "type": type,
        "source": source,
        "event_time": event_time,
        "received_at": event_time,
        "client_ip_hash": None,
        "ad_id": ad_id,
        "campaign_id": "camp-1",
        "placement": "top",
        "user_id": None,
        "properties": {},
    }
    event.update(extra)
    return event


async def put_archive(s3: Any, bucket: str, events: list[dict], name: str = "part-0") -> None:
    """Write events as gzip JSON lines, one object per (source, dt, hour) partition."""
    groups: dict[str, list[dict]] = {}
    for event in events:
        t = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).astimezone(UTC)
        key = f"{event['source']}/dt={t:%Y-%m-%d}/hour={t:%H}/{name}.json.gz"
        groups.setdefault(key, []).append(event)
    for key, group in groups.items():
        body = gzip.compress(b"".join(orjson.dumps(e) + b"\n" for e in group))
        await s3.put_object(Bucket=bucket, Key=key, Body=body)


async def read_stream(kinesis: Any, stream: str) -> list[dict]:
    """Return every record of ``stream`` (all shards) decoded, with its partition key and sequence number."""
    records = await read_stream_records(kinesis, stream)
    return [{"key": r["PartitionKey"], "seq": r["SequenceNumber"], "data": orjson.loads(r["Data"])} for r in records]


@pytest.fixture
async def settings(make_settings: Callable[..., Any]) -> ReplaySettings:
    # A prefix per test keeps arq queues and Redis keys apart even if a worker outlives its test.
    current = make_settings(ReplaySettings, resource_prefix=f"hw{uuid.uuid4().hex[:6]}")
    # Only what replay touches (buckets and streams): the full bootstrap's queues and tables cost seconds per test.
    async with AwsClients(current) as clients:
        s3 = await clients.get("s3")
        for name in ("raw", "curated"):
            await s3.create_bucket(Bucket=current.bucket(name))
        await ensure_streams(await clients.get("kinesis"), current)
    engine = create_engine(current)
    await create_tables(engine)
    await engine.dispose()
    return current


@pytest.fixture
async def aws(settings: ReplaySettings) -> AsyncIterator[AwsClients]:
    async with AwsClients(settings) as clients:
        yield clients


@pytest.fixture(scope="session")
def _hashed_key() -> tuple[str, ApiKey]:
    """Hash one API key per session (argon2 is deliberately slow); each test stores it in its own database."""
    key_id = secrets.token_hex(6)
    key = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(
        key_id=key_id, name="replay-tests", scopes="read replay:run replay:query", key_hash=PasswordHasher().hash(key)
    )


@pytest.fixture
async def api_key(settings: ReplaySettings, _hashed_key: tuple[str, ApiKey]) -> str:
    key, row = _hashed_key
    engine = create_engine(settings)
    async with session_factory(engine)() as session:
        session.add(ApiKey.model_validate(row.model_dump()))
        await session.commit()
    await engine.dispose()
    return key


@pytest.fixture
async def client(settings: ReplaySettings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://replay", headers=headers) as http:
            yield http


@pytest.fixture
async def run_worker(settings: ReplaySettings) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """Return a function running an arq burst worker over the queued jobs; returns jobs completed."""
    workers: list[Worker] = []

    async def _run() -> int:
        worker = Worker(
            functions=worker_functions(settings),
            queue_name=settings.arq_queue,
            redis_settings=arq_redis_settings(settings),
            on_startup=startup,
            on_shutdown=shutdown,
            ctx={"settings": settings},
            burst=True,
            poll_delay=0,
            handle_signals=False,
        )
        workers.append(worker)
        await worker.main()
        return worker.jobs_complete

    yield _run
    for worker in workers:
        await worker.close()


@pytest.fixture
async def service_url(settings: ReplaySettings) -> AsyncIterator[str]:
    """Serve the app with uvicorn on a free port, with an arq worker running beside it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    worker = Worker(
        functions=worker_functions(settings),
        queue_name=settings.arq_queue,
        redis_settings=arq_redis_settings(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings},
        poll_delay=0.05,
        handle_signals=False,
    )
    working = asyncio.create_task(worker.main())
    await wait_until(lambda: asyncio.sleep(0, server.started), timeout=10, message="uvicorn did not start")
    yield f"http://127.0.0.1:{port}"
    await worker.close()
    working.cancel()
    await asyncio.gather(working, return_exceptions=True)
    server.should_exit = True
    await serving
