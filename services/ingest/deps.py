"""Typed dependency aliases of the ingest routes (all read the wiring the lifespan opened)."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from services.ingest.beacons import admit, client_ip
from services.ingest.intake import Intake
from services.ingest.realtime import RealtimeCounters
from services.ingest.settings import IngestSettings
from services.ingest.wiring import IngestWiring
from shared.auth import Principal, verifier_for
from shared.deps import get_clients
from shared.errors import ForbiddenError, UnauthorizedError


# The dependencies below are ``async def`` although they never wait: FastAPI runs a plain ``def`` dependency in
# its thread pool, and four thread hand-offs per request cost more CPU than a 100-event batch's own work.
async def get_wiring(request: Request) -> IngestWiring:
    """Return the app's ingest wiring."""
    return cast(IngestWiring, get_clients(request))


WiringDep = Annotated[IngestWiring, Depends(get_wiring)]


async def get_settings(wiring: WiringDep) -> IngestSettings:
    """Return the ingest settings the app was built with."""
    return wiring.settings


async def get_intake(wiring: WiringDep) -> Intake:
    """Return the intake (the one way events are accepted)."""
    return wiring.intake


async def get_counters(wiring: WiringDep) -> RealtimeCounters:
    """Return the real-time counters."""
    return wiring.counters


async def get_s3(wiring: WiringDep) -> Any:
    """Return the app's S3 client."""
    return await wiring.aws.get("s3")


async def get_client_ip(request: Request, wiring: WiringDep) -> str | None:
    """Return the caller's IP (see ``beacons.client_ip``)."""
    return client_ip(request.scope, trust_forwarded_for=wiring.settings.trust_forwarded_for)


async def get_beacon_client(ip: Annotated[str | None, Depends(get_client_ip)], wiring: WiringDep) -> str | None:
    """Admit a beacon under its client's rate limit (429 beyond it); return the client IP."""
    admit(wiring.limiter, ip)
    return ip


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
CountersDep = Annotated[RealtimeCounters, Depends(get_counters)]
S3Dep = Annotated[Any, Depends(get_s3)]
ClientIp = Annotated[str | None, Depends(get_client_ip)]
BeaconClientIp = Annotated[str | None, Depends(get_beacon_client)]


_basic = HTTPBasic(auto_error=False, description="Segment write key: the user name is an ingest:write API key")


async def check_write_key(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
) -> Principal:
    """Admit a Segment write key (HTTP Basic user name, empty password) holding ``ingest:write``; no body is read."""
    if credentials is None or not credentials.username:
        raise UnauthorizedError(
            "missing write key: send 'Authorization: Basic base64(<write key>:)'", headers={"WWW-Authenticate": "Basic"}
        )
    client = request.client.host if request.client else None
    principal = await verifier_for(request.app.state).verify(credentials.username, client=client)
    if principal is None:
        raise UnauthorizedError("invalid or revoked write key", headers={"WWW-Authenticate": "Basic"})
    if not principal.allows("ingest:write"):
        raise ForbiddenError("this write key lacks the 'ingest:write' scope")
    return principal


WriteKey = Annotated[Principal, Security(check_write_key, scopes=["ingest:write"])]
