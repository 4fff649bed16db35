"""The DAG page in headless Chromium draws a chain's tasks with their states."""

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
from tests.browser import CHROMIUM
from tests.helpers import free_port, wait_until

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
    served: str, admin_headers: dict[str, str], burst_worker: Callable[[], Any]
) -> None:
    from playwright.async_api import async_playwright

    async with httpx.AsyncClient(base_url=served, headers=admin_headers) as client:
        submitted = (await client.post("/v1/chains/testchains/hello/ShoutTask", json={"name": "page"})).json()
    await burst_worker()
    key = admin_headers["Authorization"].removeprefix("Bearer ")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{served}/ui/chains.html")
        await page.evaluate(f"localStorage.setItem('headwater.key', {key!r})")
        await page.goto(f"{served}/ui/chains.html?chain={submitted['target']}")
        await page.wait_for_selector("g.node.DONE >> nth=1", timeout=15_000)
        titles = await page.eval_on_selector_all("g.node text:first-of-type", "els => els.map(e => e.textContent)")
        state = await page.text_content("#state")
        await browser.close()

    assert sorted(titles) == ["HelloTask", "ShoutTask"]
    assert state == "DONE"
    assert errors == []
