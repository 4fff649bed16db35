"""The console's live page draws the counts that were sent to a real ingest (headless Chromium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, console_errors, serve_console
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
async def test_live_page_shows_the_impressions_clicks_and_ctr_sent(ingest: Ingest) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    events = [{"type": "impression", "ad_id": "ad-ui"} for _ in range(12)]
    events += [{"type": "click", "ad_id": "ad-ui"} for _ in range(4)]
    assert (await ingest.http.post("/v1/events", json=events, headers=ingest.auth())).status_code == 202

    async def _flushed() -> bool:
        body = (await ingest.http.get("/v1/realtime", headers=ingest.auth(ingest.read_key))).json()
        return body["totals"]["clicks"] == 4

    await wait_until(_flushed, message="counters flushed to Redis")
    async with (
        serve_console({"ingest": ingest.url}, ingest.settings.database_url) as console,
        playwright_api.async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 700})
            errors = console_errors(page)
            await page.goto(f"{console}/live?refresh_ms=500#key={ingest.read_key}")
            # A read key: the header names its one scope.
            await page.wait_for_function("document.getElementById('scopes')?.textContent === 'read'")
            await page.wait_for_function(
                "document.getElementById('total-impressions')?.textContent === '12'", timeout=40_000
            )
            assert await page.text_content("#total-clicks") == "4"
            assert await page.text_content("#total-ctr") == "33.3%"
            assert await page.text_content("#ads tr[data-ad='ad-ui'] td:nth-child(4)") == "33.3%"
            assert await page.locator("#chart rect[data-minute]").count() == 60
            # The page refreshes itself: new traffic appears without a reload.
            await ingest.http.post("/v1/events", json=events[:3], headers=ingest.auth())
            await page.wait_for_function(
                "document.getElementById('total-impressions')?.textContent === '15'", timeout=40_000
            )
            assert errors == []
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "ingest-realtime.png"), full_page=True)
        finally:
            await browser.close()
    assert shutil.which(CHROMIUM) and (ARTIFACTS / "ingest-realtime.png").stat().st_size > 0
