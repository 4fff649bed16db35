"""The console's shell in headless Chromium (no mesh needed): the sign-in form, a refused key, the key kept for the
tab (and only the tab), sign-out, each service's readiness dot and Swagger link, and a page that is not there."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser import CHROMIUM, LAUNCH_ARGS, console_errors
from tests.console.test_proxy import console, database_url, keys, upstream  # noqa: F401 (fixtures)

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed (extra: browser)")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        await launched.close()


async def test_sign_in_once_for_the_tab_then_sign_out(
    browser: Any,
    console: str,  # noqa: F811
    keys: dict[str, str],  # noqa: F811
) -> None:
    page = await browser.new_page()
    errors = console_errors(page)
    await page.goto(f"{console}/chains")
    await page.locator("#signin").wait_for()
    await page.fill("#signin-key", keys["reader"] + "nope")
    await page.click('#signin-form button[type="submit"]')
    await page.locator("#signin-error", has_text="invalid or revoked").wait_for()

    await page.fill("#signin-key", keys["reader"])
    await page.click('#signin-form button[type="submit"]')
    await page.locator("#scopes", has_text="read, replay:run").wait_for()
    assert await page.locator("#signin").is_hidden()
    assert await page.get_attribute('#nav a[data-nav="chains"]', "aria-current") == "page"

    await page.reload()  # the same tab keeps the key
    await page.locator("#scopes", has_text="read, replay:run").wait_for()
    other = await browser.new_page()  # another context's tab does not get it
    await other.goto(f"{console}/jobs")
    await other.locator("#signin").wait_for()

    await page.click("#signout")
    await page.locator("#signin").wait_for()
    assert await page.evaluate("sessionStorage.length") == 0
    assert errors == []


async def test_the_header_shows_each_services_readiness_and_swagger(
    browser: Any,
    console: str,  # noqa: F811
    keys: dict[str, str],  # noqa: F811
) -> None:
    page = await browser.new_page()
    await page.goto(f"{console}/nowhere#key={keys['admin']}")
    await page.locator('#services a[data-service="up"][data-ready="true"]').wait_for()
    await page.locator('#services a[data-service="down"][data-ready="false"]').wait_for()
    assert await page.get_attribute('#services a[data-service="up"]', "href") == "/console/docs/up"
    assert "not ready" in (await page.get_attribute('#services a[data-service="down"]', "title") or "")
    await page.locator("#page", has_text="No page at /nowhere").wait_for()
