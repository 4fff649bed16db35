"""How the page tests drive Debian's Chromium through Playwright (its own browser download does not work here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.helpers import free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
# Screenshots the page tests keep for people to look at (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Without the background-networking flags Chromium keeps dialling out, and this machine refuses every attempt.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@contextlib.asynccontextmanager
async def serve_console(upstreams: dict[str, str], database_url: str) -> AsyncIterator[str]:
    """Serve the console (``headwater.console``) on a free port, proxying to ``upstreams``; yield its URL.

    The pages live only in the console now, so a service's page test runs the console in front of that service.
    ``database_url`` is the metadata database holding the test's keys (the console checks a key's scopes there).
    """
    from headwater.console.app import create_app
    from headwater.console.settings import ConsoleSettings

    settings = ConsoleSettings(
        console_upstreams=upstreams, database_url=database_url, environment="test", log_json=False
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(_up, message="console did not start")
    try:
        yield base
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def console_errors(page: Any) -> list[str]:
    """Collect the page's console errors and uncaught exceptions (a test asserts the list stays empty).

    Chromium also logs every HTTP answer >= 400 as "Failed to load resource"; those are the API's refusals the pages
    show on purpose (a 422 beside the form's fields, a service not ready), not errors of the page, so they are left out.
    """
    errors: list[str] = []

    def _console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", _console)
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    return errors
