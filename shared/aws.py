"""aiobotocore client factory.

The endpoint comes from the standard ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``, which
botocore reads itself); with neither set, real AWS is used.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from shared.settings import HeadwaterSettings

# Credentials the emulator accepts; only used when an endpoint is set and no credentials are.
_EMULATOR_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client_kwargs(settings: HeadwaterSettings, service: str) -> dict[str, Any]:
    """Return the keyword arguments for creating a client of ``service``."""
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        "config": AioConfig(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=50,
            connect_timeout=5,
            read_timeout=30,
        ),
    }
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    endpoint = specific or settings.aws_endpoint_url
    if endpoint:
        kwargs["endpoint_url"] = endpoint
        if not os.environ.get("AWS_ACCESS_KEY_ID"):
            kwargs.update(_EMULATOR_CREDENTIALS)
    return kwargs


class AwsClients:
    """Long-lived aiobotocore clients, opened once per process and closed at shutdown."""

    def __init__(self, settings: HeadwaterSettings, session: AioSession | None = None) -> None:
        self._settings = settings
        self._session = session or get_session()
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def get(self, service: str) -> Any:
        """Return the open client for ``service``, creating it on first use."""
        client = self._clients.get(service)
        if client is None:
            async with self._lock:
                client = self._clients.get(service)
                if client is None:
                    creator = self._session.create_client(service, **client_kwargs(self._settings, service))
                    client = await self._stack.enter_async_context(creator)
                    self._clients[service] = client
        return client

    async def close(self) -> None:
        """Close every client opened so far."""
        await self._stack.aclose()
        self._clients.clear()

    async def __aenter__(self) -> AwsClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
