"""The console's chains page (DAG) in headless Chromium, in front of a real transform: draws a chain's tasks with
their states; a failing chain shows red with its traceback, Retry after the fix turns it green, and the page
updates itself (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from services.transform.app import create_app
from services.transform.settings import TransformSettings
from tests.browser import CHROMIUM, LAUNCH_ARGS, serve_console
from tests.helpers import free_port, wait_until
from tests.transform.chain_helpers import abc_params, background_worker, fast

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed"),
]


@pytest.fixture
async def served(settings: TransformSettings) -> AsyncIterator[str]:
    """The transform app on a real port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(_up, timeout=20, message="app did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_dag_page_draws_the_tasks_of_a_finished_chain(
    served: str, admin_headers: dict[str, str], burst_worker: Callable[[], Any], settings: TransformSettings
) -> None:
    from playwright.async_api import async_playwright

    async with httpx.AsyncClient(base_url=served, headers=admin_headers) as client:
        submitted = (await client.post("/v1/chains/testchains/hello/ShoutTask", json={"name": "page"})).json()
    await burst_worker()
    key = admin_headers["Authorization"].removeprefix("Bearer ")

    async with serve_console({"transform": served}, settings.database_url) as console, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # The chain target's own URL, signed in by the fragment.
        await page.goto(f"{console}/chains?chain={submitted['target']}#key={key}")
        await page.wait_for_selector("g.node.DONE >> nth=1", timeout=15_000)
        titles = await page.eval_on_selector_all("g.node text:first-of-type", "els => els.map(e => e.textContent)")
        state = await page.text_content("#state")
        await browser.close()

    assert sorted(titles) == ["HelloTask", "ShoutTask"]
    assert state == "DONE"
    assert errors == []


async def test_a_failing_chain_shows_red_with_its_traceback_and_retry_turns_it_green_live(
    served: str,
    admin_headers: dict[str, str],
    settings: TransformSettings,
    tmp_path: Any,
) -> None:
    from playwright.async_api import async_playwright

    broken = tmp_path / "broken"
    broken.touch()
    key = admin_headers["Authorization"].removeprefix("Bearer ")
    async with (
        background_worker(fast(settings)),
        serve_console({"transform": served}, settings.database_url) as console,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{console}/chains#key={key}")
        await page.evaluate("window.loadedOnce = true")  # gone if the page reloads
        async with httpx.AsyncClient(base_url=served, headers=admin_headers) as client:
            params = abc_params(tmp_path, fail_file=str(broken))
            await client.post("/v1/chains/testchains/abc/CTask", json=params)
        await page.click("tr.run >> nth=0", timeout=15_000)  # the overview lists the run without typing a target
        await page.wait_for_selector("g.node.FAILED[data-task='BTask']", timeout=20_000)
        await page.click("g.node[data-task='BTask']")
        await page.wait_for_selector("#retry", timeout=10_000)
        traceback = await page.text_content("#task-traceback")
        log = await page.text_content("#task-log")
        failed_count = await page.locator("g.node.FAILED").count()
        await page.screenshot(path=str(tmp_path / "failed.png"))

        broken.unlink()  # the fix
        await page.click("#retry")
        await page.wait_for_selector("g.node.DONE >> nth=2", timeout=20_000)
        state = await page.text_content("#state")
        # The overview has its own stream: its badge turns green on its next event.
        await page.wait_for_selector('tr.run >> nth=0 >> .badge[data-state="DONE"]', timeout=10_000)
        run_badge = await page.text_content("tr.run >> nth=0 >> .badge")
        kept = await page.evaluate("window.loadedOnce === true")
        await browser.close()

    assert "Traceback (most recent call last)" in (traceback or "") and "RuntimeError: B is broken" in (traceback or "")
    assert "B starts on b'a'" in (log or "")
    assert failed_count == 2  # B, and C failed because of it
    assert state == "DONE"
    assert run_badge == "DONE"
    assert kept  # no reload: the events kept the page current
    assert errors == []
