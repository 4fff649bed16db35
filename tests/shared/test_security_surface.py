"""Every private or mutating endpoint of every service refuses a request without an API key."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from headwater.config import SERVICES
from headwater.setup_steps import import_all_models
from shared.db import create_tables

# Open on purpose: operations endpoints, the pages and their static files, the public beacons, and the
# seed's retired routes (they answer 410 with a pointer to the new ones).
PUBLIC = re.compile(
    r"^(/healthz|/readyz|/metrics|/docs.*|/redoc|/openapi\.json|/ui.*|/v1/beacons/(impression|click)|/api/users.*|/api/event/.*|/com\.snowplowanalytics\.snowplow/tp2|/i)$"
)


def _app(service: str, make_settings: Callable[..., Any]) -> Any:
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings_class = next(
        v
        for k, v in vars(settings_module).items()
        if k.endswith("Settings") and getattr(v, "__module__", "") == settings_module.__name__
    )
    return app_module.create_app(make_settings(settings_class))


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize("service", SERVICES)
async def test_private_and_mutating_routes_need_a_key(
    service: str, make_settings: Callable[..., Any], bootstrapped: Any
) -> None:
    app = _app(service, make_settings)
    import_all_models()
    async with app.router.lifespan_context(app):
        await create_tables(app.state.wiring.db_engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            checked = []
            # The OpenAPI document is the published surface: check every operation in it.
            for path, operations in app.openapi()["paths"].items():
                if PUBLIC.match(path):
                    continue
                for method in operations:
                    response = await client.request(method.upper(), _concrete(path), json={})
                    checked.append((method.upper(), path, response.status_code))
    open_routes = [c for c in checked if c[2] != 401]
    assert checked, f"{service} has no private routes?"
    assert open_routes == [], f"{service} answers without an API key: {open_routes}"


class _CountingBody:
    """A chunked body of 1 GiB that counts how much of it the server pulled."""

    chunk = 64 * 1024

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> Any:
        for _ in range(16_384):
            self.pulled += self.chunk
            yield b"{" * self.chunk


@pytest.mark.parametrize("service", SERVICES)
async def test_no_body_is_read_before_the_key_is_checked(
    service: str, make_settings: Callable[..., Any], bootstrapped: Any
) -> None:
    app = _app(service, make_settings)
    import_all_models()
    async with app.router.lifespan_context(app):
        await create_tables(app.state.wiring.db_engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            read_first = []
            for path, operations in app.openapi()["paths"].items():
                for method, operation in operations.items():
                    if "requestBody" not in operation:
                        continue
                    body = _CountingBody()
                    response = await client.request(
                        method.upper(), _concrete(path), content=body, headers={"Content-Type": "application/json"}
                    )
                    if PUBLIC.match(path):
                        # Public protocol endpoints (Snowplow's tp2) read bodies without a key: boundedly.
                        if response.status_code != 413 or body.pulled > 4 * 1024 * 1024:
                            read_first.append((method.upper(), path, response.status_code, body.pulled))
                    elif response.status_code != 401 or body.pulled > body.chunk:
                        read_first.append((method.upper(), path, response.status_code, body.pulled))
    assert read_first == [], f"{service} reads bodies before checking the key (or without bound): {read_first}"
