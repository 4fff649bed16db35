"""``headwater devices import|list`` against the poller app on a real port: tables, --json, progress on stderr."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from headwater.main import app as headwater
from services.poller.app import create_app
from services.poller.settings import PollerSettings
from services.poller.simulator import SimulatedFleet, simulator_server
from shared.auth import create_api_key
from shared.db import create_engine, create_tables, session_factory
from tests.helpers import free_port, wait_until
from tests.poller.conftest import device_record


@pytest.fixture
async def served(poller_settings: Callable[..., PollerSettings]) -> AsyncIterator[tuple[str, str]]:
    """The poller app on a free port, and a devices:admin + read key."""
    settings = poller_settings()
    engine = create_engine(settings)
    await create_tables(engine)
    async with session_factory(engine)() as session:
        key = await create_api_key(session=session, scopes=["devices:admin", "read"])
    await engine.dispose()
    port = free_port()
    server = simulator_server(create_app(settings), port=port)  # type: ignore[arg-type]
    server.config.lifespan = "on"
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_until(_up, timeout=15, message="poller app started")
        yield url, key
    finally:
        server.should_exit = True
        await task


async def _devices(url: str, key: str, *args: str) -> tuple[int, str, str]:
    argv = ["devices", *args, "--url", url, "--api-key", key]
    result = await asyncio.to_thread(CliRunner().invoke, headwater, argv, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


async def test_devices_import_shows_progress_and_a_summary_then_list_shows_them(
    served: tuple[str, str], tmp_path: Path, fleet: SimulatedFleet
) -> None:
    url, key = served
    file = tmp_path / "devices.jl"
    file.write_bytes(b"".join(orjson.dumps(device_record(fleet, f"00001{n}")) + b"\n" for n in range(3)))

    code, out, err = await _devices(url, key, "import", str(file), "--batch", "2")
    assert code == 0, err
    assert "created" in out and "devices from devices.jl" in out  # the summary table
    assert "import" in err and "3/3" in err  # the progress bar, on stderr

    code, out, _ = await _devices(url, key, "list", "--json")
    devices = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(d["cloud_id"] for d in devices) == ["000010", "000011", "000012"]
    assert all("password" not in str(d) for d in devices)

    code, out, _ = await _devices(url, key, "list")
    assert code == 0 and "3 devices" in out and all(f"00001{n}" in out for n in range(3))

    code, out, err = await _devices(url, key, "import", str(file), "--json")
    assert code == 2 and orjson.loads(out) == {"created": 0, "updated": 0, "failed": 3}
    assert "line 1: exists" in err
