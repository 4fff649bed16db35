"""Helpers of the chain tests: a fast-lease worker running in the background, submit and wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from arq.worker import Worker

from services.transform.settings import TransformSettings
from services.transform.worker import shutdown, startup, worker_functions, worker_redis_settings
from tests.helpers import wait_until

# Two seconds of lease: short enough for quick recovery, long enough for heartbeats on a loaded 2-core machine.
FAST = {"chain_lease_s": 2.0, "chain_sweep_s": 0.3, "consume_requests": False}


def fast(settings: TransformSettings) -> TransformSettings:
    """Return settings with a two-second lease and a sweep three times a second."""
    return settings.model_copy(update=FAST)


@contextlib.asynccontextmanager
async def background_worker(settings: TransformSettings) -> AsyncIterator[Worker]:
    """Run an arq worker (with the chain sweeper) in this process until the block ends."""
    worker = Worker(
        functions=worker_functions(settings),
        queue_name=settings.arq_queue,
        redis_settings=worker_redis_settings(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings},
        poll_delay=0.05,
        handle_signals=False,
        max_jobs=4,
    )
    task = asyncio.create_task(worker.async_run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()


def abc_params(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Return params of the A -> B -> C test chain with a trace file under ``tmp_path``."""
    return {"run": tmp_path.name, "trace": str(tmp_path / "trace.txt"), **extra}


def trace(tmp_path: Path) -> list[str]:
    """Return the task starts the A -> B -> C chain traced, in order."""
    path = tmp_path / "trace.txt"
    return path.read_text().split() if path.exists() else []


async def submit(client: httpx.AsyncClient, headers: dict[str, str], task: str, params: dict[str, Any]) -> Any:
    """Submit a task of the A -> B -> C chain; return the answer's JSON."""
    response = await client.post(f"/v1/chains/testchains/abc/{task}", json=params, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


async def status(client: httpx.AsyncClient, headers: dict[str, str], target: str) -> Any:
    """Return a target's status."""
    response = await client.get("/v1/chains/status", params={"chain": target}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def settled(
    client: httpx.AsyncClient, headers: dict[str, str], target: str, *, timeout: float = 30.0
) -> dict[str, Any]:
    """Wait until a root is DONE or FAILED; return its status."""

    async def _probe() -> Any:
        body = await status(client, headers, target)
        return body if body["job_status"] in ("DONE", "FAILED") else None

    return await wait_until(_probe, timeout=timeout, interval=0.1, message=f"{target} did not settle")


def states(body: dict[str, Any]) -> dict[str, str]:
    """Return {task: state} of a status."""
    return {t["task"]: t["state"] for t in body["tasks"]}
