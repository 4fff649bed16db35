"""The service around the loop: readiness, the page's endpoints, latest readings, the CLI import, the cron job."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import typer
from arq import Retry
from typer.testing import CliRunner

from headwater.commands import poller as poller_cli
from services.poller import worker
from services.poller.app import create_app
from services.poller.logwriter import log_path
from services.poller.registry import Registry
from services.poller.rotation import RotationReport
from services.poller.settings import PollerSettings
from services.poller.simulator import SimulatedFleet, simulator_server
from services.poller.wiring import open_poller
from services.poller.worker import rotate_logs
from shared.auth import create_api_key
from shared.bootstrap import bootstrap
from shared.db import create_tables
from tests.helpers import free_port, wait_until
from tests.poller.conftest import Api, device_record


async def test_readyz_checks_redis_database_and_logs_bucket(poller_settings: Callable[..., PollerSettings]) -> None:
    settings = poller_settings()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://poller") as client:
            missing = await client.get("/readyz")
            assert missing.status_code == 503
            assert missing.json()["checks"]["redis"] == "ok"
            assert missing.json()["checks"]["logs_bucket"] != "ok"
            await bootstrap(settings)
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"]) == {"redis", "database", "logs_bucket"}


async def test_page_and_its_endpoints_show_states_minutes_and_shards(
    api: Api, fleet: SimulatedFleet, start_poller: Callable[..., Any]
) -> None:
    page = await api.client.get("/ui/")  # the page moved to the console
    assert page.status_code == 308 and page.headers["location"].endswith("/devices")
    for cloud_id in ("000001", "000002"):
        await api.client.post("/v1/devices", json=device_record(fleet, cloud_id), headers=api.admin)
    await api.client.post("/v1/devices", json=device_record(fleet, "000003", eagle_password="no"), headers=api.admin)
    assert (await api.client.get("/v1/devices/000001/latest", headers=api.reader)).status_code == 404
    await start_poller(replica_id="replica-ui")

    async def _stats() -> Any:
        stats = (await api.client.get("/v1/stats", headers=api.reader)).json()
        latest = await api.client.get("/v1/devices/000001/latest", headers=api.reader)
        ready = stats["devices_by_state"]["auth_failed"] == 1 and stats["on_time_pct"] and latest.status_code == 200
        return stats if ready else None

    stats = await wait_until(_stats, timeout=10, message="stats with readings and one auth failure")
    assert stats["devices_by_state"]["active"] == 2
    assert sum(m["reads"] for m in stats["minutes"]) > 0
    shards = (await api.client.get("/v1/shards", headers=api.reader)).json()
    assert [r["replica_id"] for r in shards["replicas"]] == ["replica-ui"]
    assert {s["owner"] for s in shards["shards"]} == {"replica-ui"}
    assert sum(s["devices"] for s in shards["shards"]) == 3
    latest = await api.client.get("/v1/devices/000001/latest", headers=api.reader)
    assert latest.status_code == 200 and latest.json()["cloud_id"] == "000001"


async def test_cli_imports_devices_from_json_lines(
    poller_settings: Callable[..., PollerSettings], tmp_path: Path, fleet: SimulatedFleet
) -> None:
    settings = poller_settings()
    app = create_app(settings)
    port = free_port()
    server = simulator_server(app, port=port)  # type: ignore[arg-type]
    server.config.lifespan = "on"
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: _value(server.started), timeout=10, message="app started")
        await create_tables(app.state.wiring.db_engine)
        async with app.state.wiring.sessions() as session:
            key = await create_api_key(session=session, scopes=["devices:admin"])
        records = [device_record(fleet, "000011"), {"cloud_id": 12, "owner_email": "x@example.com", "user_pw": "p"}]
        file = tmp_path / "devices.jl"
        file.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        cli = typer.Typer()
        poller_cli.register(cli)
        args = ["devices", "import", str(file), "--url", f"http://127.0.0.1:{port}", "--api-key", key, "--json"]
        result = await asyncio.to_thread(CliRunner().invoke, cli, args)
        assert result.exit_code == 2, result.output
        assert '"created":1' in result.output and "line 2: invalid" in result.output
        registry: Registry = app.state.wiring.registry
        assert (await registry.get("000011")).cloud_id == "000011"
    finally:
        server.should_exit = True
        await task


async def test_rotation_cron_job_uploads_closed_hours(
    poller_settings: Callable[..., PollerSettings], tmp_path: Path
) -> None:
    settings = poller_settings(rotation_grace_s=0)
    await bootstrap(settings)
    hour = datetime.now(UTC) - timedelta(hours=2)
    path = log_path(settings.logs_path, "000009", hour)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"demand_kw": 1.0}\n')
    wiring = await open_poller(settings)
    try:
        result = await rotate_logs({"wiring": wiring, "job_try": 1})
    finally:
        await wiring.close()
    assert result == {"uploaded": 1, "failed": 0}
    assert not path.exists()


async def _awaitable(value: Any) -> Any:
    return value


def _value(value: Any) -> Any:
    return _awaitable(value)


class _Rotating:
    """A wiring stand-in whose rotation reports what the test says."""

    def __init__(self, report: RotationReport) -> None:
        self.report = report

    async def rotate_logs(self) -> RotationReport:
        return self.report


async def test_rotation_job_retries_transient_failures_and_leaves_others_for_the_next_run() -> None:
    transient = RotationReport(failed=["k"], transient=True)
    with pytest.raises(Retry):
        await rotate_logs({"wiring": _Rotating(transient), "job_try": 1})
    assert await rotate_logs({"wiring": _Rotating(transient), "job_try": 5}) == {"uploaded": 0, "failed": 1}
    permanent = RotationReport(failed=["k"])
    assert await rotate_logs({"wiring": _Rotating(permanent), "job_try": 1}) == {"uploaded": 0, "failed": 1}


def test_worker_settings_are_built_when_first_read_not_at_import(
    poller_settings: Callable[..., PollerSettings],
) -> None:
    settings = poller_settings()
    assert "settings" not in vars(worker) and "WorkerSettings" not in vars(worker)
    built = worker.build_worker_settings(settings)
    assert built.queue_name == settings.arq_queue and built.ctx == {"settings": settings}
    assert built.on_startup is worker.startup and built.on_shutdown is worker.shutdown  # rotation: per replica
