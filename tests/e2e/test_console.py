"""The console in headless Chromium against a whole mesh (``headwater up``) after the demo: sign in once, every page
through the navigation shows the demo's data at 1280 and 390 px, tables sort and page, a load job made through its
form (a field error first) and paused, resumed, cancelled and deleted by clicks, a bad then a good schema upload, a
schema proposed from a sample, a replay job created from the query page and watched to the end, devices added and
imported, a read-only key that sees what it cannot do disabled with the reason, and no error in the browser console.

Screenshots of every page go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from headwater.config import SERVICES, CliSettings
from headwater.demo import run_demo
from tests.browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, console_errors
from tests.e2e.conftest import RunningMesh

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (extra: browser)")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]

PAGES = {  # nav name: a selector that exists only once the page shows the demo's data
    "live": "#ads tr[data-ad]",
    "schemas": "#schemas tr[data-schema]",
    "chains": "#task option",
    "jobs": "#jobs tr[data-job-id]",
    "query": "#jobs tr[data-id]",
    "devices": "#devices tr[data-device]",
}
BAD_SCHEMA = (
    "name: console_clicks\nversion: 1\ncolumns:\n  - {name: ad_id, source: ad_id, type: varchar(64)}\n"
    "  - {name: n, source: n, type: no_such_type}\n"
)
GOOD_SCHEMA = BAD_SCHEMA.replace("no_such_type", "bigint")


@pytest.fixture(scope="module")
def demo_mesh(mesh: RunningMesh) -> Iterator[RunningMesh]:
    """The mesh after one small demo run (jobs, loaded days, a replay, polled meters)."""
    runtime = json.loads((mesh.data_dir / "mesh.json").read_text())
    ports = {f"{s}_port": int(mesh.urls[s].rsplit(":", 1)[1]) for s in SERVICES}
    settings = CliSettings(
        data_dir=mesh.data_dir,
        aws_endpoint_url=runtime["AWS_ENDPOINT_URL"],
        redis_url=runtime["HEADWATER_REDIS_URL"],
        database_url=runtime["HEADWATER_DATABASE_URL"],
        **ports,
    )
    assert asyncio.run(run_demo(settings, events=300, meter_reads=50, step_timeout=90)).ok
    # The demo's events fall on past days; the live page shows the last hour, so some traffic arrives now too.
    send_live_traffic(mesh)
    yield mesh


def send_live_traffic(mesh: RunningMesh) -> None:
    """Post impressions and clicks of this minute to ingest."""
    events = [{"type": "impression", "ad_id": "ad-console"} for _ in range(12)]
    events += [{"type": "click", "ad_id": "ad-console"} for _ in range(4)]
    key = (mesh.data_dir / "admin.key").read_text().strip()
    response = httpx.post(
        f"{mesh.urls['ingest']}/v1/events", json=events, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 202, response.text


def _key(mesh: RunningMesh, *scopes: str) -> str:
    if scopes == ("admin",):
        return (mesh.data_dir / "admin.key").read_text().strip()
    argv = [sys.executable, "-m", "headwater.main", "keys", "create"] + [f"--scope={s}" for s in scopes]
    return subprocess.run(argv, env=mesh.env, capture_output=True, text=True, check=True).stdout.strip()


async def _visit_every_page(page: Any, width: int) -> None:
    for name, shows_data in PAGES.items():
        if width < 700:  # the navigation folds behind a menu button on a phone
            await page.click("#menu")
        await page.click(f'#nav a[data-nav="{name}"]')
        await page.wait_for_url(f"**/{name}")
        await page.locator(shows_data).first.wait_for(state="attached", timeout=30_000)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} scrolls sideways at {width} px"
        await page.screenshot(path=str(ARTIFACTS / f"console-{name}-{width}.png"), full_page=True)


async def _tables_sort_page_and_show_local_times(page: Any) -> None:
    await page.click('#nav a[data-nav="devices"]')
    pager = page.locator("#devices .pager")  # the simulated fleet is more than one page of the table
    await pager.filter(has_text="page 1 of").wait_for()
    await pager.locator("button", has_text="next").click()
    await pager.filter(has_text="page 2 of").wait_for()
    cloud_id = page.locator('#devices th[data-sort="cloud_id"]')
    await cloud_id.click()
    await cloud_id.click()
    assert await cloud_id.get_attribute("aria-sort") == "descending"
    ids = await page.locator('#devices td[data-col="cloud_id"]').all_inner_texts()
    assert ids == sorted(ids, reverse=True) and len(ids) > 1
    await page.click('#nav a[data-nav="jobs"]')
    created = page.locator("#jobs time").first
    await created.wait_for()
    assert (await created.get_attribute("title") or "").endswith(" UTC")  # local time shown, UTC on hover


async def _load_job_through_the_form(page: Any) -> None:
    await page.click('#nav a[data-nav="jobs"]')
    await page.click("#new-job")
    await page.wait_for_url("**/jobs/new")
    await page.locator('#schema-select option[value="ad_events"]').wait_for(state="attached")
    await page.fill('[name="name"]', "console job")
    await page.select_option("#schema-select", "ad_events")
    await page.fill('[name="source"]', "s3://hw-raw/beacon/dt=YYYY-MM-DD/")
    await page.click('#job-form button[type="submit"]')  # no start date yet: the API's 422, beside the field
    error = page.locator('.field-error[data-field="start_date"]')
    await error.wait_for()
    assert await page.get_attribute('[name="start_date"]', "aria-invalid") == "true"
    await page.fill('[name="start_date"]', "2026-01-05")
    await page.fill('[name="end_date"]', "2026-01-06")
    await page.click('#job-form button[type="submit"]')
    await page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_url = page.url
    state = page.locator("#detail-title .job-state")
    for verb, after in (("pause", "paused"), ("resume", "active"), ("cancel", "cancelled")):
        await page.click(f'#job-actions button[data-action="{verb}"]')
        await state.locator(f'[data-state="{after}"]').wait_for()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.click('#job-actions button[data-action="delete"]')
    await page.wait_for_url("**/jobs")
    job_id = job_url.rsplit("/", 1)[1]
    await page.locator("#jobs tr[data-job-id]").first.wait_for()
    assert await page.locator(f'#jobs tr[data-job-id="{job_id}"]').count() == 0


async def _schemas_through_the_forms(page: Any) -> None:
    await page.click('#nav a[data-nav="schemas"]')
    await page.fill("#schema-yaml", BAD_SCHEMA)
    await page.click('#upload-form button[type="submit"]')
    await page.locator("#upload-error").filter(has_text="line 5").wait_for()
    assert await page.locator('#yaml-lines li.bad[data-line="5"]').count() == 1
    await page.fill("#schema-yaml", GOOD_SCHEMA)
    await page.click('#upload-form button[type="submit"]')
    await page.locator("#upload-ok").wait_for()
    await page.locator('#schemas tr[data-schema="console_clicks/1"]').wait_for()
    await page.click("#upload-ok a")  # the schema's own page: its YAML, lines numbered
    await page.wait_for_url("**/schemas/console_clicks/1")
    await page.locator("#yaml-lines li").nth(4).wait_for()
    assert "name: console_clicks" in await page.inner_text("#yaml-lines")
    await page.go_back()
    await page.locator("#runs tr[data-run] a").first.click()  # a transform run of the demo, on its own page
    await page.wait_for_url("**/transforms/*")
    await page.locator("#transform [data-state]").first.wait_for()
    await page.go_back()
    await page.locator("#log2schema-form").wait_for()
    # log2schema: a sample file becomes a proposal in the upload form.
    sample = b'{"ad_id": "a1", "ts": 1764460800000, "n": 3}\n{"ad_id": "a2", "ts": 1764460801000, "n": 4}\n'
    await page.set_input_files(
        "#sample-file", {"name": "sample.jl", "mimeType": "application/x-ndjson", "buffer": sample}
    )
    await page.fill('#log2schema-form [name="name"]', "sample_events")
    await page.click('#log2schema-form button[type="submit"]')
    await page.locator("#log2schema-result").filter(has_text="2 records").wait_for()
    proposal = await page.input_value("#schema-yaml")
    assert "name: sample_events" in proposal and "source: ad_id" in proposal


async def _replay_from_the_query_page(page: Any) -> None:
    await page.click('#nav a[data-nav="query"]')
    await page.click("#run")
    await page.locator("#results tbody tr").first.wait_for()
    form = page.locator("#replay-form")
    await form.locator('[name="annotate"]').fill("not json")
    await form.locator('button[type="submit"]').click()
    await form.locator('.field-error[data-field="annotate"]').wait_for()
    await form.locator('[name="annotate"]').fill('{"by": "console test"}')
    await form.locator('[name="event_types"]').fill("click")
    await form.locator('[name="rate_limit"]').fill("500")
    await form.locator('button[type="submit"]').click()
    await page.wait_for_url("**/replays/*")
    await page.locator('#replay-state [data-state="succeeded"]').wait_for(timeout=60_000)
    progress = await page.inner_text("#replay-progress")
    read, total = progress.split(" read")[0].split(" / ")
    assert read == total and int(total) > 0


async def _devices_through_the_forms(page: Any) -> None:
    await page.click('#nav a[data-nav="devices"]')
    form = page.locator("#device-form")
    await form.locator('[name="cloud_id"]').fill("c0ffee")
    await form.locator('[name="owner_email"]').fill("console@example.com")
    await form.locator('[name="eagle_password"]').fill("s3cret-pw")
    await form.locator('button[type="submit"]').click()
    await page.locator("#device-ok").wait_for()
    lines = '{"cloud_id": "c0ffe1", "owner_email": "a@example.com", "eagle_password": "x"}\n{"cloud_id": "bad one"}\n'
    await page.fill("#import-lines", lines)
    await page.click('#import-form button[type="submit"]')
    await page.locator("#import-summary").filter(has_text="1 created").wait_for()
    assert "1 failed" in await page.inner_text("#import-summary")
    await page.goto(page.url.split("/devices")[0] + "/devices/c0ffee")  # the device's own URL
    await page.locator('#device [data-field="owner_email"]').filter(has_text="console@example.com").wait_for()
    assert "s3cret-pw" not in await page.content()


def test_up_prints_the_console_address_before_the_service_table(mesh: RunningMesh) -> None:
    output = (mesh.data_dir / "up.out").read_text()
    assert f"console: {mesh.console_url}/" in output
    assert output.index("console: ") < output.index("Headwater mesh")


async def test_the_console_shows_every_page_and_drives_every_form(demo_mesh: RunningMesh) -> None:
    admin = _key(demo_mesh, "admin")
    reader = _key(demo_mesh, "read")
    ARTIFACTS.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors = console_errors(page)
            await page.goto(f"{demo_mesh.console_url}/#key={admin}")  # signed in once, by the fragment
            await page.locator("#scopes", has_text="admin").wait_for()
            assert "key=" not in page.url
            await page.locator('#services [data-ready="true"]').nth(len(SERVICES) - 1).wait_for(timeout=20_000)
            await _visit_every_page(page, 1280)
            await _tables_sort_page_and_show_local_times(page)
            await _load_job_through_the_form(page)
            await _schemas_through_the_forms(page)
            await _replay_from_the_query_page(page)
            await _devices_through_the_forms(page)
            assert errors == []

            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            phone_errors = console_errors(phone)
            await phone.goto(f"{demo_mesh.console_url}/live#key={admin}")
            await _visit_every_page(phone, 390)
            assert phone_errors == []

            # A read-only key: actions it cannot do are disabled, with the reason.
            viewer = await browser.new_page(viewport={"width": 1280, "height": 900})
            await viewer.goto(f"{demo_mesh.console_url}/jobs#key={reader}")
            pause = viewer.locator('#jobs button[data-action="pause"]').first
            await pause.wait_for()
            assert await pause.is_disabled()
            assert "jobs:admin" in (await pause.get_attribute("title") or "")
            await viewer.goto(f"{demo_mesh.console_url}/jobs/new")  # the key stays for the whole tab
            assert await viewer.locator('#job-form button[type="submit"]').is_disabled()
            assert await viewer.locator('#job-form [data-reason="jobs:admin"]').count() == 1
        finally:
            await browser.close()
    async with httpx.AsyncClient() as http:  # the proxy kept the key's own answers: 403 for the read-only key
        refused = await http.post(
            f"{demo_mesh.console_url}/api/loader/v1/jobs", json={}, headers={"Authorization": f"Bearer {reader}"}
        )
    assert refused.status_code == 403
