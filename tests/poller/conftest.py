"""Poller fixtures: an in-process Eagle simulator, fast poller settings, the API app with keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import structlog
from redis.asyncio import Redis

from services.poller.app import create_app
from services.poller.crypto import fernet_from_settings
from services.poller.http_pool import make_http_client
from services.poller.polling import Poller
from services.poller.registry import Registry
from services.poller.settings import PollerSettings
from services.poller.simulator import SimulatedFleet, simulator_server
from shared.auth import create_api_key
from shared.db import create_tables
from tests.helpers import free_port, wait_until


@pytest.fixture
async def fleet_server() -> AsyncIterator[Callable[..., Any]]:
    """Start simulated fleets on free ports in this event loop; return a starter."""
    servers: list[tuple[Any, asyncio.Task[None]]] = []

    async def _start(fleet: SimulatedFleet) -> str:
        port = free_port()
        server = simulator_server(fleet, port=port)
        server.config.install_signal_handlers = False  # type: ignore[attr-defined]
        task = asyncio.create_task(server.serve())
        servers.append((server, task))
        await wait_until(lambda: _ready(server), timeout=10, message="simulator did not start")
        return f"http://127.0.0.1:{port}"

    yield _start
    for server, _task in servers:
        server.should_exit = True
        server.force_exit = True
    await asyncio.gather(*(task for _, task in servers), return_exceptions=True)


async def _ready(server: Any) -> bool:
    return bool(server.started)


@pytest.fixture
def fleet() -> SimulatedFleet:
    """A small fleet answering fast, recording when each device is asked."""
    return SimulatedFleet(count=20, latency=(0.005, 0.015), hang_s=5.0, slow=(0.1, 0.2), record_times=True)


@pytest.fixture
async def eagle_url(fleet: SimulatedFleet, fleet_server: Callable[..., Any]) -> str:
    """Return the base URL of the running simulated fleet."""
    return await fleet_server(fleet)


@pytest.fixture
def poller_settings(make_settings: Callable[..., Any], eagle_url: str, tmp_path: Any) -> Callable[..., PollerSettings]:
    """Build fast poller settings (half-second ticks) pointed at the simulator."""

    def _make(**overrides: Any) -> PollerSettings:
        values: dict[str, Any] = {
            "eagle_base_url": eagle_url,
            "poll_interval_s": 0.5,
            "request_timeout_s": 0.3,
            "on_time_tolerance_s": 0.2,
            "backoff_cap_s": 4.0,
            "registry_check_s": 0.2,
            "heartbeat_s": 0.2,
            "lease_ttl_s": 1.0,
            "shard_count": 8,
            "log_flush_s": 0.2,
            "ingest_flush_s": 0.2,
            "log_dir": tmp_path / "logs",
        }
        values.update(overrides)
        return make_settings(PollerSettings, **values)

    return _make


@pytest.fixture
async def registry(redis: Redis, poller_settings: Callable[..., PollerSettings]) -> Registry:
    """Return a registry on the test's Redis."""
    settings = poller_settings()
    return Registry(redis, prefix=settings.redis_prefix, fernet=fernet_from_settings(settings), shard_count=8)


@pytest.fixture
async def start_poller(
    redis: Redis, registry: Registry, poller_settings: Callable[..., PollerSettings]
) -> AsyncIterator[Callable[..., Any]]:
    """Start pollers (replicas) in this event loop; stop them all at the end."""
    started: list[tuple[Poller, httpx.AsyncClient]] = []

    async def _start(**overrides: Any) -> Poller:
        poster = overrides.pop("poster", None)
        settings = poller_settings(**overrides)
        http = make_http_client(settings)
        poller = Poller(settings, redis=redis, http=http, registry=registry, poster=poster)
        await poller.start()
        started.append((poller, http))
        return poller

    yield _start
    for poller, http in started:
        if not poller.stop_event.is_set():
            await poller.stop()
        await http.aclose()


class Api:
    """The app under test with an admin-scoped and a read-scoped key."""

    def __init__(self, client: httpx.AsyncClient, admin_key: str, read_key: str) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin_key}"}
        self.reader = {"Authorization": f"Bearer {read_key}"}


@pytest.fixture
async def api(poller_settings: Callable[..., PollerSettings]) -> AsyncIterator[Api]:
    """Run the poller app (lifespan included) over ASGITransport with keys."""
    app = create_app(poller_settings())
    async with app.router.lifespan_context(app):
        await create_tables(app.state.wiring.db_engine)
        async with app.state.wiring.sessions() as session:
            admin_key = await create_api_key(session=session, scopes=["devices:admin", "read"])
            read_key = await create_api_key(session=session, scopes=["read"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://poller") as client:
            yield Api(client, admin_key, read_key)


def device_record(fleet: SimulatedFleet, cloud_id: str, **overrides: Any) -> dict[str, Any]:
    """Return a registration record with the simulated device's real credentials."""
    device = fleet.devices[cloud_id]
    record = {"cloud_id": cloud_id, "owner_email": device.user, "eagle_password": device.password}
    record.update(overrides)
    return record


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.CapturingLogger:
    """Record every event the poller's modules log during the test, before any redaction.

    The module loggers are swapped for a capturing one: structlog caches configured loggers on first
    use, so adding a processor to the global configuration would miss loggers cached by earlier tests.
    """
    from services.poller import ingest_client, leases, polling, rotation, wiring

    capturing = structlog.testing.CapturingLogger()
    logger = structlog.wrap_logger(capturing, processors=[], wrapper_class=structlog.make_filtering_bound_logger(0))
    for module in (polling, leases, ingest_client, rotation, wiring):
        monkeypatch.setattr(module, "log", logger)
    return capturing
