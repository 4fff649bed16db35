"""A small streaming reverse proxy: ``/api/<service>/<path>`` goes to ``<upstream>/<path>``.

Bodies stream both ways (nothing is buffered, so uploads and server-sent events pass through as they come), headers
pass through (including ``Authorization`` and ``X-API-Key``) except the hop-by-hop ones, and an upstream that does
not answer becomes a 502 in the one error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shared.errors import error_response

# RFC 9110 7.6.1 connection-specific fields, plus Host (httpx sets the upstream's).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def forwarded_headers(request: Request) -> list[tuple[str, str]]:
    """Return the request's end-to-end headers plus the X-Forwarded-* ones the upstream may trust."""
    named_in_connection = {
        token.strip().lower() for token in request.headers.get("connection", "").split(",") if token.strip()
    }
    headers = [
        (name, value)
        for name, value in request.headers.items()
        if name not in HOP_BY_HOP and name not in named_in_connection and not name.startswith("x-forwarded-")
    ]
    client = request.client.host if request.client else ""
    if client:
        headers.append(("x-forwarded-for", client))
    headers.append(("x-forwarded-proto", request.url.scheme))
    headers.append(("x-forwarded-host", request.headers.get("host", "")))
    return headers


def _has_body(request: Request) -> bool:
    return "content-length" in request.headers or "transfer-encoding" in request.headers


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def forward(client: httpx.AsyncClient, request: Request, upstream: str, path: str) -> Response:
    """Send ``request`` to ``upstream``/``path`` and stream the answer back."""
    url = httpx.URL(upstream.rstrip("/") + "/" + path.lstrip("/"), query=request.url.query.encode())
    outbound = client.build_request(
        request.method,
        url,
        headers=forwarded_headers(request),
        content=_body(request) if _has_body(request) else None,
    )
    try:
        answer = await client.send(outbound, stream=True)
    except httpx.HTTPError as exc:
        return error_response(502, "bad_gateway", f"the service at {upstream} did not answer: {type(exc).__name__}")
    response = StreamingResponse(
        _relay(answer), status_code=answer.status_code, background=BackgroundTask(answer.aclose)
    )
    # Every end-to-end header as it came, repeated ones (Set-Cookie) too; the raw bytes are relayed still encoded,
    # so Content-Length and Content-Encoding stay true.
    response.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.headers.multi_items()
        if name.lower() not in HOP_BY_HOP
    ]
    return response


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """Yield the upstream's raw bytes (still content-encoded) and always release the connection."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    finally:
        await answer.aclose()
