"""Integrator API keys: scoped, hashed at rest (argon2), sent as ``Authorization: Bearer <key>``.

A key looks like ``hw_<key id>_<secret>``. The id finds the row; the whole key is verified against
its argon2 hash. Verified keys are cached in-process for a short time (by SHA-256 of the key, never
the key itself) so a hot endpoint does not pay argon2 on every request; revocation therefore takes
effect within ``CACHE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import time
from collections import deque
from datetime import datetime
from typing import Annotated, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.errors import ForbiddenError, TooManyRequestsError, UnauthorizedError
from shared.messages import utc_now

SCOPES = ("admin", "ingest:write", "jobs:admin", "replay:run", "replay:query", "devices:admin", "read")
CACHE_TTL_S = 30.0
NEGATIVE_TTL_S = 10.0
FAILURE_LIMIT = 10
FAILURE_WINDOW_S = 60.0

_hasher = PasswordHasher()
_bearer = HTTPBearer(auto_error=False, description="Integrator API key: `Authorization: Bearer hw_...`")


class ApiKey(SQLModel, table=True):
    """A stored API key: only its argon2 hash, never the key."""

    __tablename__ = "api_key"

    key_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(default="", max_length=200)
    scopes: str = Field(description="space-separated scopes")
    key_hash: str
    created_at: datetime = Field(default_factory=utc_now)
    revoked: bool = False


class Principal(SQLModel):
    """Who is calling: the key id and its scopes."""

    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Return whether this principal holds ``scope`` (admin holds all)."""
        return "admin" in self.scopes or scope in self.scopes


def _check_scopes(scopes: list[str]) -> None:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"unknown or empty scopes {unknown}; choose from {', '.join(SCOPES)}")


async def create_api_key(*, session: AsyncSession, scopes: list[str], name: str = "") -> str:
    """Create a key with ``scopes``, store its hash, and return the key (shown once)."""
    _check_scopes(scopes)
    key_id = secrets.token_hex(6)
    key = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(key_id=key_id, name=name, scopes=" ".join(sorted(set(scopes))), key_hash=_hasher.hash(key)))
    await session.commit()
    return key


async def revoke_api_key(*, session: AsyncSession, key_id: str) -> bool:
    """Revoke a key by id; return whether it existed."""
    row = await session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked = True
    session.add(row)
    await session.commit()
    return True


class TooManyFailuresError(TooManyRequestsError):
    """Too many failed key checks for this key id or from this client: answered without running argon2."""


class FailureLimiter:
    """Count failed key checks per key id and per client in a sliding window (in-process, per replica)."""

    def __init__(self, *, limit: int = FAILURE_LIMIT, window_s: float = FAILURE_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, name: str, now: float) -> deque[float]:
        times = self._failures.setdefault(name, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def check(self, *names: str) -> None:
        """Raise when any of ``names`` has failed ``limit`` times within the window."""
        now = time.monotonic()
        for name in names:
            times = self._recent(name, now)
            if len(times) >= self.limit:
                retry = max(1, int(times[0] + self.window_s - now) + 1)
                raise TooManyFailuresError(
                    "too many failed API key checks: retry later", headers={"Retry-After": str(retry)}
                )

    def record(self, *names: str) -> None:
        """Record one failure for each of ``names``."""
        now = time.monotonic()
        if len(self._failures) > 50_000:
            self._failures.clear()
        for name in names:
            self._recent(name, now).append(now)


class KeyVerifier:
    """Verify presented keys against the database, with a short in-process cache.

    A wrong secret costs a full argon2 run (tens of ms and 64 MiB), so failures are bounded: one argon2 run at a
    time, failed keys are remembered for ``NEGATIVE_TTL_S``, and a key id or a client with ``FAILURE_LIMIT``
    failures in ``FAILURE_WINDOW_S`` gets 429 without any hashing. Unknown key ids run argon2 against a dummy hash,
    so they cost what known ones cost and timing does not tell which ids exist.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}
        # One verification per key at a time: a burst after a cache expiry waits for it instead of repeating it.
        self._inflight: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._hashing = asyncio.Semaphore(1)
        self.failures = FailureLimiter()

    async def verify(self, key: str, *, client: str | None = None) -> Principal | None:
        """Return the principal for ``key``, or None when it is unknown, malformed or revoked."""
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        names = [f"key:{_key_id(key)}"] + ([f"client:{client}"] if client else [])
        self.failures.check(*names)
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            principal = await self._verify_uncached(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._inflight[digest]
        future.set_result(principal)
        if len(self._cache) > 10_000:
            self._cache.clear()
        if principal is None:
            self.failures.record(*names)
            self._cache[digest] = (time.monotonic() + NEGATIVE_TTL_S, None)
        else:
            self._cache[digest] = (time.monotonic() + CACHE_TTL_S, principal)
        return principal

    async def _verify_uncached(self, key: str) -> Principal | None:
        key_id = _key_id(key)
        row = None
        if key_id:
            async with self._sessions() as session:
                row = (await session.exec(select(ApiKey).where(ApiKey.key_id == key_id))).first()
        # argon2 is deliberately slow (tens of ms of CPU): keep it off the event loop, one run at a time, and run
        # it for unknown ids too (against a dummy hash) so both cost the same.
        async with self._hashing:
            matches = await asyncio.to_thread(_matches, row.key_hash if row else _dummy_hash(), key)
        if row is None or row.revoked or not matches:
            return None
        return Principal(key_id=row.key_id, scopes=frozenset(row.scopes.split()))


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("hw_unknown_" + secrets.token_urlsafe(32))


def _key_id(key: str) -> str:
    parts = key.split("_", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "hw" and len(parts[1]) <= 32 else ""


def _matches(key_hash: str, key: str) -> bool:
    try:
        return _hasher.verify(key_hash, key)
    except (VerificationError, InvalidHashError):
        return False


def verifier_for(state: Any) -> KeyVerifier:
    """Return the app's key verifier (one per app, over its wiring's metadata database)."""
    if getattr(state, "key_verifier", None) is None:
        state.key_verifier = KeyVerifier(state.wiring.sessions)
    return state.key_verifier


async def authorise(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Admit only keys holding every scope the route declares (401 without a key, 403 without the scope)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError(
            "missing API key: send 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"}
        )
    client = request.client.host if request.client else None
    principal = await verifier_for(request.app.state).verify(credentials.credentials, client=client)
    if principal is None:
        raise UnauthorizedError("invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    for scope in security_scopes.scopes:
        if not principal.allows(scope):
            raise ForbiddenError(f"this key lacks the '{scope}' scope")
    return principal


def require_scope(scope: str) -> Any:
    """Return a ``Security`` dependency admitting keys with ``scope``; the spec shows the scope on the route."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    return Security(authorise, scopes=[scope])


# One alias per scope: routes declare ``who: ReadScope`` (or list it in ``dependencies``).
ReadScope = Annotated[Principal, require_scope("read")]
IngestWriteScope = Annotated[Principal, require_scope("ingest:write")]
JobsAdminScope = Annotated[Principal, require_scope("jobs:admin")]
ReplayRunScope = Annotated[Principal, require_scope("replay:run")]
# Replaying an ad-hoc query (records made up by SQL), beside replay:run.
ReplayQueryScope = Annotated[Principal, require_scope("replay:query")]
DevicesAdminScope = Annotated[Principal, require_scope("devices:admin")]
