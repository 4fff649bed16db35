"""Transform fixtures: settings on a bootstrapped emulator, the app over ASGI with its lifespan, an API key,
and an in-process arq worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arq.worker import Worker

from services.transform.app import create_app
from services.transform.settings import TransformSettings
from services.transform.worker import shutdown, startup, worker_functions
from shared.auth import create_api_key
from shared.aws import AwsClients
from shared.db import create_engine, create_tables, session_factory
from shared.redis import arq_redis_settings


@pytest.fixture
async def settings(make_settings: Callable[..., Any]) -> TransformSettings:
    value = make_settings(TransformSettings, retry_base_s=0.05, max_tries=3, block_bytes=4096, lock_retry_s=0.2)
    async with AwsClients(value) as clients:  # only what transform uses, created concurrently
        s3, sqs = await clients.get("s3"), await clients.get("sqs")
        await asyncio.gather(
            *(s3.create_bucket(Bucket=value.bucket(name)) for name in ("raw", "curated", "bad-rows", "logs", "chains")),
            *(sqs.create_queue(QueueName=value.queue(name)) for name in ("transform-requests", "load-requests")),
        )
    engine = create_engine(value)
    await create_tables(engine)
    await engine.dispose()
    return value


@pytest.fixture
async def aws(settings: TransformSettings) -> AsyncIterator[AwsClients]:
    clients = AwsClients(settings)
    yield clients
    await clients.close()


@pytest.fixture
async def s3(aws: AwsClients) -> Any:
    return await aws.get("s3")


@pytest.fixture
async def sqs(aws: AwsClients) -> Any:
    return await aws.get("sqs")


@pytest.fixture
async def app_client(settings: TransformSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://transform") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def _key(settings: TransformSettings, scopes: list[str]) -> str:
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            return await create_api_key(session=session, scopes=scopes)
    finally:
        await engine.dispose()


@pytest.fixture
async def admin_headers(settings: TransformSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {await _key(settings, ['jobs:admin', 'read'])}"}


@pytest.fixture
async def read_headers(settings: TransformSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {await _key(settings, ['read'])}"}


def make_worker(settings: TransformSettings, *, burst: bool, consume: bool) -> Worker:
    """Build an in-process arq worker with the service's functions and startup/shutdown."""
    settings = settings.model_copy(update={"consume_requests": consume})
    return Worker(
        functions=worker_functions(settings),
        queue_name=settings.arq_queue,
        redis_settings=arq_redis_settings(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings},
        burst=burst,
        poll_delay=0.05,
        handle_signals=False,
        max_jobs=2,
    )


@pytest.fixture
async def running_worker(settings: TransformSettings) -> AsyncIterator[Worker]:
    """A worker running in the background (consuming SQS too) for the test's duration."""
    worker = make_worker(settings, burst=False, consume=True)
    task = asyncio.create_task(worker.async_run())
    yield worker
    # Stop the run loop first, then close: a job still finishing is cancelled by arq, which surfaces here as
    # CancelledError and is expected at teardown.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()


@pytest.fixture
def burst_worker(settings: TransformSettings) -> Callable[[], Any]:
    """Return a coroutine factory that runs queued jobs to completion (no SQS consumer)."""

    async def _run() -> None:
        worker = make_worker(settings, burst=True, consume=False)
        try:
            await worker.main()
        finally:
            await worker.close()

    return _run
