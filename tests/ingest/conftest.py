"""Ingest fixtures: bootstrapped emulator, the app served by uvicorn on a free port, API keys, archive readers."""

from __future__ import annotations

import asyncio
import gzip
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from argon2 import PasswordHasher
from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.auth import ApiKey
from shared.aws import AwsClients
from shared.bootstrap import ensure_buckets, ensure_streams
from shared.db import create_engine, create_tables, session_factory
from shared.kinesis import read_stream
from tests.helpers import free_port, wait_until


@dataclass
class Ingest:
    """A running ingest app and what tests need to talk to it."""

    app: FastAPI
    url: str
    http: httpx.AsyncClient
    write_key: str
    read_key: str
    settings: IngestSettings

    def auth(self, key: str | None = None) -> dict[str, str]:
        """Return the Authorization header for ``key`` (the ingest:write key by default)."""
        return {"Authorization": f"Bearer {key or self.write_key}"}


def _hashed_key(scope: str) -> tuple[str, ApiKey]:
    key_id = secrets.token_hex(6)
    key = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(key_id=key_id, name=f"test {scope}", scopes=scope, key_hash=PasswordHasher().hash(key))


# argon2 is deliberately slow: hash the two test keys once per session; each test stores the rows in its own DB.
_KEYS = {scope: _hashed_key(scope) for scope in ("ingest:write", "read")}


async def make_keys(settings: IngestSettings) -> tuple[str, str]:
    """Create the metadata tables, store an ingest:write key and a read key; return (write key, read key)."""
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            for _, row in _KEYS.values():
                session.add(ApiKey.model_validate(row.model_dump()))
            await session.commit()
    finally:
        await engine.dispose()
    return _KEYS["ingest:write"][0], _KEYS["read"][0]


async def bootstrap_ingest(settings: IngestSettings) -> None:
    """Create only what ingest touches (buckets and streams): quicker than the full bootstrap."""
    async with AwsClients(settings) as aws:
        await ensure_buckets(await aws.get("s3"), settings)
        await ensure_streams(await aws.get("kinesis"), settings)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port inside this event loop; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())

    async def _started() -> bool:
        if task.done():
            task.result()
        return server.started

    await wait_until(_started, timeout=20, message="uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture
def ingest_settings_factory(make_settings: Callable[..., Any]) -> Callable[..., IngestSettings]:
    """Return a builder of ingest settings tuned for quick tests (short flush interval)."""

    def _make(**overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {"flush_interval_s": 0.2, "cloudwatch_enabled": False}
        values.update(overrides)
        return make_settings(IngestSettings, **values)

    return _make


@pytest.fixture
async def ingest_settings(ingest_settings_factory: Callable[..., IngestSettings]) -> IngestSettings:
    """Return bootstrapped ingest settings."""
    settings = ingest_settings_factory()
    await bootstrap_ingest(settings)
    return settings


@pytest.fixture
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[Ingest]:
    """Run the ingest app over real HTTP with an ingest:write key and a read key."""
    write, read = await make_keys(ingest_settings)
    app = create_app(ingest_settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield Ingest(app=app, url=url, http=http, write_key=write, read_key=read, settings=ingest_settings)


@pytest.fixture
async def aws(ingest_settings: IngestSettings) -> AsyncIterator[AwsClients]:
    """Return AWS clients on the emulator for assertions."""
    async with AwsClients(ingest_settings) as clients:
        yield clients


async def archived_objects(aws: AwsClients, settings: IngestSettings, prefix: str = "") -> dict[str, list[dict]]:
    """Return {key: records} for every archive object under ``prefix`` in the raw bucket."""
    s3 = await aws.get("s3")
    found: dict[str, list[dict]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=settings.bucket("raw"), Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".json.gz"):
                continue
            body = await (await s3.get_object(Bucket=settings.bucket("raw"), Key=item["Key"]))["Body"].read()
            found[item["Key"]] = [orjson.loads(line) for line in gzip.decompress(body).splitlines() if line]
    return found


async def archived_records(aws: AwsClients, settings: IngestSettings, prefix: str = "") -> list[dict]:
    """Return every archived record under ``prefix``."""
    return [record for records in (await archived_objects(aws, settings, prefix)).values() for record in records]


async def stream_records(aws: AwsClients, settings: IngestSettings) -> list[dict[str, Any]]:
    """Return every record on the events stream as {data, partition_key}."""
    records = await read_stream(await aws.get("kinesis"), settings.stream("events"))
    return [{"data": r["Data"], "partition_key": r["PartitionKey"]} for r in records]
