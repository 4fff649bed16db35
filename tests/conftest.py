"""Fixtures: a real moto server, real Redis, real Postgres, per-test settings.

Each test directory uses its own Redis database number so suites never see each other's keys,
and each test gets a flushed database, a fresh emulator state and its own data directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from shared.bootstrap import bootstrap
from shared.settings import HeadwaterSettings
from tests.helpers import free_port, wait_until_sync

REDIS_BASE_URL = os.environ.get("HEADWATER_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_DSN = os.environ.get("HEADWATER_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")

# One Redis database per test directory (0 is left to people running the mesh by hand).
REDIS_DB_BY_SUITE = {
    "shared": 7,
    "ingest": 1,
    "transform": 2,
    "loader": 3,
    "replay": 4,
    "poller": 5,
    "e2e": 6,
    "deploy": 8,
}

S = TypeVar("S", bound=HeadwaterSettings)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Start one moto server for the session (a real HTTP AWS emulator) and return its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def _up() -> bool:
        try:
            return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    wait_until_sync(_up, timeout=30, message="moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def aws_endpoint(moto_server: str) -> str:
    """Return the emulator endpoint after clearing all its state."""
    httpx.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    return moto_server


def _suite(request: pytest.FixtureRequest) -> str:
    path = Path(str(request.node.fspath))
    tests_root = Path(__file__).parent
    try:
        return path.relative_to(tests_root).parts[0]
    except (ValueError, IndexError):
        return "shared"


@pytest.fixture
async def redis_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Return a Redis URL on this suite's database, flushed before the test."""
    url = f"{REDIS_BASE_URL}/{REDIS_DB_BY_SUITE.get(_suite(request), 9)}"
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """Return a Redis client on the test's flushed database."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """Create a fresh Postgres database for the test and drop it afterwards."""
    name = f"hw_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def make_settings(
    aws_endpoint: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    """Build a service's settings pointed at this test's emulator, Redis, SQLite file and data dir."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)

    def _make(cls: type[S] = HeadwaterSettings, **overrides: Any) -> S:  # type: ignore[assignment]
        values: dict[str, Any] = {
            "environment": "test",
            "aws_endpoint_url": aws_endpoint,
            "redis_url": redis_url,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}",
            "data_dir": tmp_path / "data",
            "log_json": False,
        }
        values.update(overrides)
        return cls(**values)

    return _make


@pytest.fixture
async def bootstrapped(make_settings: Callable[..., Any]) -> HeadwaterSettings:
    """Return base settings after creating every bucket, queue, stream and table on the emulator."""
    settings = make_settings()
    await bootstrap(settings)
    return settings
