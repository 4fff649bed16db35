"""Who is signed in to the console: the presented key, checked like the services check it."""

from __future__ import annotations

from fastapi import Request

from shared.auth import Principal
from shared.errors import UnauthorizedError


def presented_key(request: Request) -> str | None:
    """Return the key of ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return request.headers.get("x-api-key", "").strip() or None


async def principal_of(request: Request) -> Principal:
    """Return the principal of the request's key (argon2 check, cached, failures bounded); 401 without one."""
    key = presented_key(request)
    if key is None:
        raise UnauthorizedError(
            "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"}
        )
    client = request.client.host if request.client else None
    principal = await request.app.state.verifier.verify(key, client=client)
    if principal is None:
        raise UnauthorizedError("invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return principal
