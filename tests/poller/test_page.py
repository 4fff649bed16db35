"""The console's devices page, in front of a real poller: devices by state, the shard map, and editing a device
with its write-only credentials (headless Chromium)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.poller.app import create_app
from services.poller.settings import PollerSettings
from services.poller.simulator import SimulatedFleet, simulator_server
from shared.auth import create_api_key
from shared.db import create_tables
from tests.browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, console_errors, serve_console
from tests.helpers import free_port, wait_until
from tests.poller.conftest import device_record

pytestmark = pytest.mark.browser


async def _started(server: Any) -> bool:
    return bool(server.started)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
async def test_page_shows_states_and_shard_owners(
    poller_settings: Callable[..., PollerSettings], fleet: SimulatedFleet, start_poller: Callable[..., Any]
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    settings = poller_settings()
    app = create_app(settings)
    port = free_port()
    server = simulator_server(app, port=port)  # type: ignore[arg-type]
    server.config.lifespan = "on"
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: _started(server), timeout=10, message="app started")
        await create_tables(app.state.wiring.db_engine)
        async with app.state.wiring.sessions() as session:
            key = await create_api_key(session=session, scopes=["devices:admin", "read"])
        auth = {"Authorization": f"Bearer {key}"}
        records = [device_record(fleet, "000001"), device_record(fleet, "000002", eagle_password="wrong")]
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.post("/v1/devices", json={"devices": records}, headers=auth)).status_code == 201
        await start_poller(replica_id="replica-page")
        async with (
            serve_console({"poller": url}, settings.database_url) as console,
            playwright_api.async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1000, "height": 800})
                errors = console_errors(page)
                await page.goto(f"{console}/devices#key={key}")
                await page.wait_for_function(
                    "document.querySelector('[data-state=auth_failed] .value')?.textContent === '1'", timeout=40_000
                )
                assert await page.text_content("#states [data-state=active] .value") == "1"
                assert await page.locator("#shards .shard").count() == 8
                await page.wait_for_function(
                    "document.getElementById('shards').textContent.includes('replica-page')", timeout=40_000
                )
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=str(ARTIFACTS / "poller-page.png"), full_page=True)

                # Edit a device on its own page: the password field starts empty (write-only) and a new one is sent.
                await page.click('#devices a:text("000002")')
                await page.wait_for_url("**/devices/000002")
                assert await page.input_value('#edit-form [name="eagle_password"]') == ""
                await page.fill('#edit-form [name="owner_email"]', "new-owner@example.com")
                await page.select_option('#edit-form [name="state"]', "paused")
                await page.click('#edit-form button[type="submit"]')
                await page.locator("#device-saved").wait_for()
                assert await page.text_content('#device [data-field="owner_email"]') == "new-owner@example.com"
                shown = await page.eval_on_selector_all(
                    "#device td[data-field]", "tds => tds.map(td => td.dataset.field)"
                )
                assert "owner_email" in shown and not any("password" in field for field in shown)
                assert errors == []
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await task
    assert (ARTIFACTS / "poller-page.png").stat().st_size > 0
