"""The console's load-job pages in headless Chromium, in front of a real loader: list, calendar, pause/resume, retry."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from tests.browser import CHROMIUM, LAUNCH_ARGS, console_errors, serve_console
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, job_body

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (extra: browser)")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]


async def test_the_page_shows_the_calendar_and_pause_changes_the_state(
    served: str, api_keys: dict[str, str], worker: Any, transform: FakeTransform, aws: Any, loader_settings: Any
) -> None:
    headers = {"Authorization": f"Bearer {api_keys['admin']}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as http:
        job_id = (await http.post("/v1/jobs", json=job_body(end_date="2026-11-22"))).json()["id"]
        await put_day(await aws.get("s3"), loader_settings, D1, beacon_events(D1, {"ad-1": (2, 1)}))

        async def _loaded() -> bool:
            runs = (await http.get(f"/v1/jobs/{job_id}/runs")).json()
            return bool(runs) and runs[0]["state"] == "loaded"

        await wait_until(_loaded, timeout=45, message="D1 never loaded")

    async with (
        serve_console({"loader": served}, loader_settings.database_url) as console,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = await browser.new_page()
            errors = console_errors(page)
            await page.goto(f"{console}/jobs#key={api_keys['admin']}")
            row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
            await row.locator(".job-state", has_text="active").wait_for()

            await row.click()
            await page.wait_for_url(f"**/jobs/{job_id}")
            cell = page.locator('#calendar td[data-dt="2026-11-20"]')
            await cell.wait_for()
            assert await cell.get_attribute("data-state") == "loaded"
            assert "3 rows" in await cell.inner_text()
            assert await page.locator('#calendar td[data-dt="2026-11-21"]').get_attribute("data-state") == "none"
            loaded = page.locator('#history tr[data-event="loaded"]')
            await loaded.wait_for()
            assert "3 rows" in await loaded.inner_text()

            actions = page.locator("#job-actions")
            await actions.locator('button[data-action="pause"]').click()
            await page.locator("#detail-title .job-state", has_text="paused").wait_for()
            await actions.locator('button[data-action="resume"]').wait_for()
            assert errors == []
        finally:
            await browser.close()

    async with httpx.AsyncClient(base_url=served, headers=headers) as http:
        assert (await http.get(f"/v1/jobs/{job_id}")).json()["state"] == "paused"


async def test_the_retry_button_loads_a_failed_date(
    served: str,
    api_keys: dict[str, str],
    worker: Any,
    transform: FakeTransform,
    aws: Any,
    loader_settings: Any,
    wiring: Any,
) -> None:
    from services.loader import scanner

    transform.fail_dates.add(D1)
    headers = {"Authorization": f"Bearer {api_keys['admin']}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as http:
        job_id = (await http.post("/v1/jobs", json=job_body(end_date="2026-11-20"))).json()["id"]
        await put_day(await aws.get("s3"), loader_settings, D1, beacon_events(D1, {"ad-1": (2, 1)}))

        async def _failed() -> bool:
            await scanner.scan_all(wiring)
            runs = (await http.get(f"/v1/jobs/{job_id}/runs")).json()
            return bool(runs) and runs[0]["state"] == "failed"

        await wait_until(_failed, timeout=45, message="D1 never failed")
    transform.fail_dates.clear()

    async with (
        serve_console({"loader": served}, loader_settings.database_url) as console,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = await browser.new_page()
            # A deep link straight to the job's own page, signed in by the fragment.
            await page.goto(f"{console}/jobs/{job_id}#key={api_keys['admin']}")
            cell = page.locator('#calendar td[data-dt="2026-11-20"]')
            await page.locator('#calendar td[data-dt="2026-11-20"][data-state="failed"]').wait_for()
            assert "mapping exploded" in (await cell.get_attribute("title") or "")
            await cell.locator('button[data-action="retry"]').click()
            await page.locator('#calendar td[data-dt="2026-11-20"][data-state="loaded"]').wait_for(timeout=30_000)
        finally:
            await browser.close()
