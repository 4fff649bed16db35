"""The poller's one HTTP client, with its connection pool split in several smaller pools.

httpcore assigns each queued request by scanning every connection of its pool (and probing idle
sockets), so a single pool of a few hundred connections spends more CPU choosing a connection
than sending the request once thousands of devices are polled per interval. Requests are
routed to one of ``pool_shards`` pools by their ``Cloud-ID`` header, which keeps each scan short
while the total connection limit stays the configured one.
"""

from __future__ import annotations

import ssl
import weakref
import zlib

import certifi
import httpx

from services.poller.settings import PollerSettings


class ShardedPoolTransport(httpx.AsyncBaseTransport):
    """Route each request to one of several connection pools by a stable hash of its Cloud-ID."""

    def __init__(self, *, shards: int, max_connections: int, keepalive_expiry: float = 30.0) -> None:
        per_pool = max(1, max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_pool, max_keepalive_connections=per_pool, keepalive_expiry=keepalive_expiry
        )
        tls = ssl.create_default_context(cafile=certifi.where())  # one context: loading CAs is slow
        self.pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls) for _ in range(shards)]

    def pool_for(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        """Return the pool serving ``request``."""
        cloud_id = request.headers.get("Cloud-ID")
        if cloud_id is None or len(self.pools) == 1:
            return self.pools[0]
        return self.pools[zlib.crc32(cloud_id.encode()) % len(self.pools)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its pool."""
        return await self.pool_for(request).handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool."""
        for pool in self.pools:
            await pool.aclose()


def make_http_client(settings: PollerSettings) -> httpx.AsyncClient:
    """Return the process's one HTTP client, with the configured connection limit over its pools."""
    transport = ShardedPoolTransport(shards=settings.pool_shards, max_connections=settings.max_connections)
    client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(settings.request_timeout_s))
    _TRANSPORTS[client] = transport
    return client


_TRANSPORTS: weakref.WeakKeyDictionary[httpx.AsyncClient, ShardedPoolTransport] = weakref.WeakKeyDictionary()


def pool_transport(client: httpx.AsyncClient) -> ShardedPoolTransport | None:
    """Return the pooled transport of a client made by ``make_http_client`` (None for other clients)."""
    return _TRANSPORTS.get(client)
