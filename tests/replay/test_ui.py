"""The console's query & replay page in headless Chromium, in front of a real replay: query results, job progress."""

from __future__ import annotations

import shutil

import pytest

from tests.browser import CHROMIUM, LAUNCH_ARGS, serve_console
from tests.replay.conftest import make_event, put_archive

pytestmark = pytest.mark.browser


@pytest.fixture
async def page():
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=LAUNCH_ARGS,
        )
        yield await browser.new_page()
        await browser.close()


async def test_page_runs_a_query_and_shows_jobs_with_progress(page, service_url, api_key, aws, settings) -> None:
    import httpx

    events = [make_event(f"u{n}", f"2026-11-24T10:00:0{n}Z", type="click" if n < 2 else "impression") for n in range(5)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    async with httpx.AsyncClient(base_url=service_url, headers={"Authorization": f"Bearer {api_key}"}) as http:
        job_id = (await http.post("/v1/replays", json={"selection": {}})).json()["id"]

    async with serve_console({"replay": service_url}, settings.database_url) as console:
        await _query_and_watch(page, console, api_key, job_id)


async def _query_and_watch(page, console: str, api_key: str, job_id: str) -> None:
    await page.goto(f"{console}/query#key={api_key}")
    await page.fill("#sql", "SELECT type, count(*) AS n FROM raw_events GROUP BY type ORDER BY type")
    await page.click("#run")
    await page.wait_for_selector("#results tbody tr:nth-child(2)", timeout=15_000)
    cells = await page.locator("#results tbody td").all_inner_texts()
    assert cells == ["click", "2", "impression", "3"]

    row = page.locator(f'#jobs tr[data-id="{job_id}"]')
    await row.locator('[data-state="succeeded"]').wait_for(timeout=20_000)
    assert "5 / 5" in await row.inner_text()
    # The job's own page (a deep link) shows the same progress.
    await row.locator("a").click()
    await page.wait_for_url(f"**/replays/{job_id}")
    await page.locator('#replay-state [data-state="succeeded"]').wait_for()
    assert "5 / 5 read" in await page.inner_text("#replay-progress")
