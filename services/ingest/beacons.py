"""What both beacon paths (the routes and the ASGI fast path) share: the caller's IP, its rate limit, the pixel."""

from __future__ import annotations

from starlette.types import Scope

from services.ingest.ratelimit import RateLimiter
from shared.errors import TooManyRequestsError

# The classic 1x1 transparent GIF.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


def client_ip(scope: Scope, *, trust_forwarded_for: bool) -> str | None:
    """Return the caller's IP (the first X-Forwarded-For hop when configured to trust it)."""
    if trust_forwarded_for:
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                return value.decode("latin-1").split(",", 1)[0].strip()
    client = scope.get("client")
    return client[0] if client else None


def admit(limiter: RateLimiter, ip: str | None) -> None:
    """Take one token of the client's beacon budget; 429 with Retry-After when it is spent."""
    if not limiter.allow(ip or "-"):
        raise TooManyRequestsError(
            "too many beacons from this client", headers={"Retry-After": str(limiter.retry_after_s())}
        )
