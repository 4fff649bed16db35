"""A chain survives a Redis restart mid-run: the worker keeps going, the running task's lease and state come back
from Redis's append-only file, and the run finishes with each target built once.

The test starts its own redis-server on a free port (the shared one at 127.0.0.1:6379 serves everyone)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.transform.app import create_app
from services.transform.settings import TransformSettings
from tests.helpers import free_port, wait_until
from tests.transform.chain_helpers import abc_params, background_worker, fast, settled, states, status, submit, trace

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


class PrivateRedis:
    """A redis-server of this test, persisting every write to its append-only file so a restart keeps state."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

        async def _up() -> bool:
            client = Redis.from_url(self.url)
            try:
                return bool(await client.ping())
            except Exception:
                return False
            finally:
                await client.aclose()

        await wait_until(_up, timeout=20, message="private redis-server did not start")

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), timeout=20)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = PrivateRedis(directory)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def private_client(
    settings: TransformSettings, private_redis: PrivateRedis
) -> AsyncIterator[tuple[httpx.AsyncClient, TransformSettings]]:
    private = settings.model_copy(update={"redis_url": private_redis.url})
    app = create_app(private)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://transform") as client:
            yield client, private


@pytest.mark.timeout(120)
async def test_a_run_finishes_once_each_when_redis_restarts_mid_task(
    private_client: tuple[httpx.AsyncClient, TransformSettings],
    private_redis: PrivateRedis,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    client, private = private_client
    async with background_worker(fast(private)):
        submitted = await submit(client, admin_headers, "CTask", abc_params(tmp_path, sleep_s=3))

        async def _b_running() -> Any:
            return states(await status(client, admin_headers, submitted["target"]))["BTask"] == "RUNNING"

        await wait_until(_b_running, timeout=30, message="B did not start")
        await private_redis.stop()  # mid-task: B is sleeping, its heartbeat and the sweeps hit a dead Redis
        await private_redis.start()
        with contextlib.suppress(Exception):  # the app's pool reconnects on the next call
            await status(client, admin_headers, submitted["target"])
        done = await settled(client, admin_headers, submitted["target"], timeout=60)

    assert states(done) == {"ATask": "DONE", "BTask": "DONE", "CTask": "DONE"}
    assert trace(tmp_path) == ["A", "B", "C"]
