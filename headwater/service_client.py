"""Calling a service's REST API from a command: base URL, API key, and one way of reporting errors."""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
import typer

from headwater.config import CliSettings, read_admin_key
from headwater.ui import fail

KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", help="API key [env HEADWATER_API_KEY, else the local admin key of `headwater up`]"),
]


def url_option(service: str) -> Any:
    """Return the ``--url`` option type of ``service`` (env HEADWATER_<SERVICE>_URL)."""
    env = f"HEADWATER_{service.upper()}_URL"
    return Annotated[str | None, typer.Option("--url", help=f"{service} base URL [env {env}]")]


def open_client(service: str, url: str | None, api_key: str | None, timeout: float = 60.0) -> httpx.Client:
    """Return an HTTP client for ``service`` with the caller's key; exit 2 when there is no key."""
    settings = CliSettings()
    base = url or os.environ.get(f"HEADWATER_{service.upper()}_URL") or settings.service_url(service)
    key = api_key or os.environ.get("HEADWATER_API_KEY") or read_admin_key(settings)
    if not key:
        raise fail("error: no API key: pass --api-key, set HEADWATER_API_KEY or run `headwater up`", 2)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)


def error_message(response: httpx.Response) -> str:
    """Return ``HTTP <status> <code>: <message> <field: reason; ...>`` from a JSON error body."""
    try:
        error = response.json()["error"]
        details = "; ".join(f"{d.get('field')}: {d.get('reason')}" for d in error.get("details") or [])
        text = f"{error.get('code', '')}: {error.get('message', '')} {details}"
    except (ValueError, KeyError, TypeError):
        text = response.text
    return f"HTTP {response.status_code} {text}".rstrip()


def call(client: httpx.Client, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
    """Send a request; print the error and exit 1 on a transport error or a status >= 400 not in ``ok``."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise fail(f"error: cannot reach {client.base_url}: {exc}") from None
    if response.status_code >= 400 and response.status_code not in ok:
        raise fail(f"error: {error_message(response)}")
    return response.json() if response.content else {}
