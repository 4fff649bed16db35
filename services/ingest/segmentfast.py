"""``POST /v1/batch`` (Segment) served as raw ASGI, in front of the router, like the beacons' fast path.

A Segment batch of 100 messages is cheap to map (``segmentbatch.py``); FastAPI's per-request work (routing,
dependency solving, the middleware stack, the response model) was the rest of its cost. This handler answers
exactly what the documented route in ``sdk_api.py`` answers (tests/ingest/test_segment_fastpath.py compares them),
in the same order:

1. the write key (HTTP Basic user name, ``ingest:write``) is checked from the header before any body byte is read:
   401 without it or with an unknown key, 403 without the scope, 429 after too many failed checks;
2. the body is bounded at 500 KB while it streams (413 at once when ``Content-Length`` says more);
3. gzip is inflated (bounded too), the messages are mapped (the msgspec batch, else the general path), and
   ``Intake.accept`` deduplicates by messageId and makes them durable before the ``200 {"success": true}``.

The route stays for the OpenAPI document and answers when ``beacon_fast_path`` is off.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from datetime import UTC, datetime
from typing import Any

from starlette.types import Receive, Scope, Send

from services.ingest import segment, segmentbatch
from services.ingest.beacons import client_ip
from services.ingest.intake import PayloadTooLargeError
from services.ingest.records import iso_z
from services.ingest.wiring import IngestWiring
from shared.auth import verifier_for
from shared.errors import ForbiddenError, UnauthorizedError

PATH = "/v1/batch"
_SUCCESS = b'{"success":true}'
_SUCCESS_HEADERS = [(b"content-length", str(len(_SUCCESS)).encode()), (b"content-type", b"application/json")]
_CHALLENGE = {"WWW-Authenticate": "Basic"}


class _Unauthenticated(UnauthorizedError):
    """The header is Basic but not decodable: FastAPI's ``HTTPBasic`` answers its own 401 to it."""

    def __init__(self) -> None:
        super().__init__("Not authenticated", headers=_CHALLENGE)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def write_key(scope: Scope) -> str:
    """Return the write key of the ``Authorization: Basic`` header (as ``HTTPBasic`` parses it), or raise 401."""
    header = _header(scope, b"authorization")
    scheme, _, param = (header or "").partition(" ")
    if not header or scheme.lower() != "basic":
        raise UnauthorizedError(
            "missing write key: send 'Authorization: Basic base64(<write key>:)'", headers=_CHALLENGE
        )
    try:
        user, separator, _password = b64decode(param.strip()).decode("ascii").partition(":")
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise _Unauthenticated from exc
    if not separator:
        raise _Unauthenticated
    if not user:
        raise UnauthorizedError(
            "missing write key: send 'Authorization: Basic base64(<write key>:)'", headers=_CHALLENGE
        )
    return user


async def check_write_key(state: Any, scope: Scope) -> None:
    """Admit a write key holding ``ingest:write`` (401/403/429 as ``deps.check_write_key``)."""
    key = write_key(scope)
    client = scope.get("client")
    principal = await verifier_for(state).verify(key, client=client[0] if client else None)
    if principal is None:
        raise UnauthorizedError("invalid or revoked write key", headers=_CHALLENGE)
    if not principal.allows("ingest:write"):
        raise ForbiddenError("this write key lacks the 'ingest:write' scope")


async def read_bounded(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the body up to ``limit`` bytes (413 beyond it, with ``api.read_body``'s messages)."""
    declared = _header(scope, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def serve_batch(wiring: IngestWiring, state: Any, scope: Scope, receive: Receive, send: Send) -> int:
    """Answer one ``POST /v1/batch``; ApiErrors propagate (the caller answers them in the error shape)."""
    ip = client_ip(scope, trust_forwarded_for=wiring.settings.trust_forwarded_for)
    await check_write_key(state, scope)
    limit = segment.MAX_BATCH_BYTES
    body = segment.inflate(await read_bounded(scope, receive, limit), _header(scope, b"content-encoding"), limit)
    received = datetime.now(UTC)
    batch: Any = segmentbatch.map_batch(body, received_iso=iso_z(received))
    if batch is None:
        messages = segment.parse_messages(body, single=None)
        batch = segment.map_messages(messages, received=received, check_sizes=len(body) > limit // 16)
    await wiring.intake.accept(batch, client_ip=ip)
    await send({"type": "http.response.start", "status": 200, "headers": _SUCCESS_HEADERS})
    await send({"type": "http.response.body", "body": _SUCCESS})
    return 200
