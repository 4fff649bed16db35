"""The poller's one HTTP client, with its connection pool split in several smaller pools.

httpcore assigns each queued request by scanning every connection of its pool (and probing idle
sockets), so a single pool of a few hundred connections spends more CPU choosing a connection
than sending the request once thousands of devices are polled per interval. Requests are
routed to one of ``pool_shards`` pools by their ``Cloud-ID`` header (cloud requests) or their host and
port (gateways on the LAN), which keeps each scan short while the total connection limit stays the
configured one. TLS (the cloud endpoint only) is verified unless the settings say otherwise.
"""

from __future__ import annotations

import ssl
import weakref
import zlib

import certifi
import httpx

from services.poller.settings import PollerSettings


class ShardedPoolTransport(httpx.AsyncBaseTransport):
    """Route each request to one of several connection pools by a stable hash of its Cloud-ID or host."""

    def __init__(
        self, *, shards: int, max_connections: int, keepalive_expiry: float = 30.0, tls: ssl.SSLContext | None = None
    ) -> None:
        per_pool = max(1, max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_pool, max_keepalive_connections=per_pool, keepalive_expiry=keepalive_expiry
        )
        verified = ssl.create_default_context(cafile=certifi.where())  # one context: loading CAs is slow
        self.pools = [httpx.AsyncHTTPTransport(limits=limits, verify=tls or verified) for _ in range(shards)]
        # A cloud-only TLS setting (own CA bundle, or no verification) must not reach ingest or anything else:
        # requests without a Cloud-ID then use pools of their own, verified as usual.
        self.other_pools = self.pools
        if tls is not None:
            others = max(1, shards // 4)
            self.other_pools = [httpx.AsyncHTTPTransport(limits=limits, verify=verified) for _ in range(others)]

    def pool_for(self, request: httpx.Request) -> httpx.AsyncHTTPTransport:
        """Return the pool serving ``request``."""
        cloud_id = request.headers.get("Cloud-ID")
        pools = self.pools if cloud_id is not None else self.other_pools
        if len(pools) == 1:
            return pools[0]
        key = cloud_id.encode() if cloud_id is not None else request.url.netloc
        return pools[zlib.crc32(key) % len(pools)]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its pool."""
        return await self.pool_for(request).handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool."""
        for pool in {id(p): p for p in [*self.pools, *self.other_pools]}.values():
            await pool.aclose()


def tls_context(settings: PollerSettings) -> ssl.SSLContext | None:
    """Return the cloud endpoint's own TLS context, or None for the default (verified against certifi's CAs)."""
    if settings.eagle_verify_tls and settings.eagle_ca_file is None:
        return None
    if not settings.eagle_verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(settings.eagle_ca_file))


def make_http_client(settings: PollerSettings) -> httpx.AsyncClient:
    """Return the process's one HTTP client, with the configured connection limit over its pools."""
    transport = ShardedPoolTransport(
        shards=settings.pool_shards, max_connections=settings.max_connections, tls=tls_context(settings)
    )
    client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(settings.request_timeout_s))
    _TRANSPORTS[client] = transport
    return client


_TRANSPORTS: weakref.WeakKeyDictionary[httpx.AsyncClient, ShardedPoolTransport] = weakref.WeakKeyDictionary()


def pool_transport(client: httpx.AsyncClient) -> ShardedPoolTransport | None:
    """Return the pooled transport of a client made by ``make_http_client`` (None for other clients)."""
    return _TRANSPORTS.get(client)
