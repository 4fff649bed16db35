"""Loader fixtures: bootstrapped emulator, the app over ASGI, an in-process arq worker, a fake transform,
and an SMTP sink that captures mail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from arq.worker import Worker

from services.loader.app import create_app
from services.loader.settings import LoaderSettings
from services.loader.wiring import LoaderWiring, open_loader
from services.loader.worker import worker_options
from shared.auth import create_api_key
from shared.aws import AwsClients
from shared.bootstrap import ensure_buckets, ensure_marker_notifications, ensure_queues, ensure_traffic_table
from shared.db import create_engine, create_tables, session_factory
from tests.helpers import free_port, wait_until
from tests.loader.fake_transform import FakeTransform, put_schema


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "on_postgres: metadata DB and warehouse on a fresh real Postgres database")


@dataclass
class MailSink:
    """Collects every message the SMTP sink receives."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Any:
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, sink
    controller.stop()


@pytest.fixture
def postgres_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """For tests marked ``on_postgres``: metadata DB and Postgres warehouse in a fresh real Postgres database."""
    if not request.node.get_closest_marker("on_postgres"):
        return {}
    url = request.getfixturevalue("postgres_url")
    return {"database_url": url.replace("postgresql://", "postgresql+asyncpg://"), "postgres_warehouse_url": url}


async def _bootstrap_loader_resources(settings: LoaderSettings) -> None:
    """What ``shared.bootstrap`` creates, less the Kinesis streams and SES the loader never touches."""
    async with AwsClients(settings) as aws:
        s3, sqs = await aws.get("s3"), await aws.get("sqs")
        await ensure_buckets(s3, settings)
        urls = await ensure_queues(sqs, settings)
        await ensure_marker_notifications(s3, sqs, settings, urls["s3-events"])
        await ensure_traffic_table(await aws.get("dynamodb"), settings)


@pytest.fixture
def redshift_overrides() -> dict[str, Any]:
    """Settings a test module may override (the Redshift tests shorten the statement deadline)."""
    return {}


@pytest.fixture
async def loader_settings(
    make_settings: Callable[..., Any],
    smtp_sink: Any,
    postgres_overrides: dict[str, Any],
    redshift_overrides: dict[str, Any],
) -> LoaderSettings:
    """Loader settings on this test's emulator, Redis, SMTP sink (and Postgres when marked)."""
    port, _ = smtp_sink
    extra = {**postgres_overrides, **redshift_overrides}
    settings = make_settings(
        LoaderSettings,
        scan_interval_s=60,
        retry_backoff_s=0.2,
        retry_backoff_max_s=1.0,
        max_attempts=2,
        smtp_port=port,
        notify_flush_s=60,
        maintenance_every_loads=2,
        **extra,
    )
    await _bootstrap_loader_resources(settings)
    engine = create_engine(settings)
    await create_tables(engine)
    await engine.dispose()
    return settings


@pytest.fixture
async def aws(loader_settings: LoaderSettings) -> AsyncIterator[AwsClients]:
    clients = AwsClients(loader_settings)
    await put_schema(await clients.get("s3"), loader_settings)
    yield clients
    await clients.close()


@pytest.fixture
async def wiring(loader_settings: LoaderSettings, redis: Any) -> AsyncIterator[LoaderWiring]:
    """The loader's wiring, as the app and the worker open it, for tests that call the domain directly."""
    opened = await open_loader(loader_settings)
    yield opened
    await opened.close()


@pytest.fixture
async def api_keys(loader_settings: LoaderSettings) -> dict[str, str]:
    engine = create_engine(loader_settings)
    async with session_factory(engine)() as session:
        admin = await create_api_key(session=session, scopes=["jobs:admin", "read"])
    keys = {"admin": admin}
    await engine.dispose()
    return keys


@pytest.fixture
async def read_key(loader_settings: LoaderSettings) -> str:
    engine = create_engine(loader_settings)
    async with session_factory(engine)() as session:
        key = await create_api_key(session=session, scopes=["read"])
    await engine.dispose()
    return key


@pytest.fixture
async def client(
    loader_settings: LoaderSettings, api_keys: dict[str, str], aws: AwsClients
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(loader_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {api_keys['admin']}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://loader", headers=headers) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
async def worker(loader_settings: LoaderSettings, aws: AwsClients) -> AsyncIterator[Worker]:
    options = worker_options(loader_settings)
    options["cron_jobs"] = []  # tests call the scanner, mail flush and retention directly
    arq_worker = Worker(**options, burst=False, poll_delay=0.05)
    task = asyncio.create_task(arq_worker.async_run())
    yield arq_worker
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await arq_worker.close()


@pytest.fixture
async def transform(loader_settings: LoaderSettings, aws: AwsClients) -> AsyncIterator[FakeTransform]:
    fake = FakeTransform(loader_settings, aws)
    stop = asyncio.Event()
    task = asyncio.create_task(fake.run(stop))
    yield fake
    stop.set()
    fake.gate.set()
    try:
        await asyncio.wait_for(task, timeout=5)
    except TimeoutError:
        task.cancel()


@pytest.fixture
async def served(loader_settings: LoaderSettings, aws: Any) -> AsyncIterator[str]:
    """The loader app on a real port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(loader_settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(_up, message="loader app did not start")
    yield base
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
