"""A page on another origin posts Snowplow events to ingest through CORS, with credentials (headless Chromium)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from services.ingest.app import create_app
from shared.aws import AwsClients
from tests.browser import CHROMIUM, LAUNCH_ARGS
from tests.helpers import wait_until
from tests.ingest.conftest import archived_records, bootstrap_ingest, serve

pytestmark = pytest.mark.browser

# What the Snowplow JS tracker does: POST the payload_data JSON with credentials ('include').
PAGE = """<!doctype html><html><body><p id="status">sending</p><script>
const body = {schema: "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
  data: [{e: "pv", eid: "b7c1e0a2-0d5e-4f7a-9b3c-2e1d0c9b8a71", dtm: String(Date.now()), stm: String(Date.now()),
          url: location.href, page: "Cross-origin shop", duid: "browser-1", p: "web", tv: "js-3.0.0"}]};
fetch("INGEST/com.snowplowanalytics.snowplow/tp2", {method: "POST", credentials: "include",
  headers: {"Content-Type": "application/json; charset=UTF-8"}, body: JSON.stringify(body)})
  .then(r => r.text().then(t => { document.getElementById("status").textContent = r.status + " " + t; }))
  .catch(e => { document.getElementById("status").textContent = "blocked " + e; });
</script></body></html>"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
async def test_a_page_on_another_origin_posts_snowplow_events_through_cors(
    ingest_settings_factory: Callable[..., Any],
) -> None:
    playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    ingest_at: dict[str, str] = {}

    async def _page(_: Any) -> HTMLResponse:
        return HTMLResponse(PAGE.replace("INGEST", ingest_at["url"]))

    # The shop serves first: its origin is what ingest must allow.
    async with serve(Starlette(routes=[Route("/", _page)])) as origin:
        settings = ingest_settings_factory(cors_origins=[origin])
        await bootstrap_ingest(settings)
        async with serve(create_app(settings)) as ingest_url:
            ingest_at["url"] = ingest_url
            async with playwright_api.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                try:
                    page = await browser.new_page()
                    await page.goto(f"{origin}/")
                    await page.wait_for_function(
                        "document.getElementById('status').textContent !== 'sending'", timeout=30_000
                    )
                    assert await page.text_content("#status") == "200 ok"
                finally:
                    await browser.close()
        async with AwsClients(settings) as aws:
            records = await wait_until(
                lambda: archived_records(aws, settings, "page/"), timeout=30, message="page view archived"
            )
    [record] = records
    assert (record["event_name"], record["anonymous_id"], record["protocol"]) == (
        "Cross-origin shop",
        "browser-1",
        "snowplow",
    )
    assert record["properties"]["url"] == f"{origin}/"
