"""The hot paths: ``GET /v1/beacons/{impression,click}`` and Segment's ``POST /v1/batch`` served by small ASGI handlers
in front of the router.

Pixels are by far the most frequent request, and FastAPI's per-request machinery (routing, dependency solving,
query-model binding, the middleware stack) costs more than making the event durable. This handler does the same
work as the documented routes in ``api.py`` (same ``BeaconQuery`` validation, rate limit, intake, headers, error
shape and request metrics) with none of that overhead, through the same ``beacons.client_ip``, ``beacons.admit``
and ``Intake.accept``. Segment batches take ``segmentfast.serve_batch`` (write key before body, same answers as the
route in ``sdk_api.py``). ``beacon_fast_path=false`` turns both off, and the routes then answer the same requests.
"""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest import segmentfast
from services.ingest.beacons import NO_CACHE, PIXEL, admit, client_ip
from services.ingest.intake import Beacon
from services.ingest.models import BeaconQuery
from services.ingest.wiring import IngestWiring
from shared.errors import ApiError, error_response, validation_details
from shared.http import LATENCY, REQUESTS
from shared.logging import get_logger

log = get_logger(__name__)

PATHS: dict[str, Literal["impression", "click"]] = {
    "/v1/beacons/impression": "impression",
    "/v1/beacons/click": "click",
}
_NO_CACHE_HEADERS = [(name.lower().encode(), value.encode()) for name, value in NO_CACHE.items()]
_GIF_HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    *_NO_CACHE_HEADERS,
]


class BeaconFastPath:
    """Answer GET beacons directly; pass every other request on.

    ``state`` is the app's state: the wiring appears there when the lifespan has opened it, and is read from it
    at the first beacon (the middleware is built before the lifespan runs).
    """

    def __init__(self, app: ASGIApp, state: Any, service: str) -> None:
        self.app = app
        self.state = state
        self.service = service
        self._wiring: IngestWiring | None = None
        self._metrics: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        kind = PATHS.get(scope.get("path", "")) if method == "GET" else None
        if kind is None:
            if method == "POST" and scope.get("path") == segmentfast.PATH:
                await self._segment_batch(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        try:
            status = await self._beacon(kind, scope, receive, send)
        finally:
            self._observe(scope["path"], status, time.perf_counter() - started)

    async def _segment_batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500
        wiring = self._wiring
        if wiring is None:
            wiring = self._wiring = self.state.wiring
        try:
            status = await segmentfast.serve_batch(wiring, self.state, scope, receive, send)
        except ApiError as exc:
            status = await _error(
                scope, receive, send, exc.status_code, exc.code, exc.message, exc.details, exc.headers
            )
        except Exception as exc:
            log.exception("segment_batch_failed", error=type(exc).__name__)
            status = await _error(scope, receive, send, 500, "internal_error", "internal server error")
        finally:
            self._observe(scope["path"], status, time.perf_counter() - started, method="POST")

    async def _beacon(self, kind: Literal["impression", "click"], scope: Scope, receive: Receive, send: Send) -> int:
        wiring = self._wiring
        if wiring is None:
            wiring = self._wiring = self.state.wiring
        ip = client_ip(scope, trust_forwarded_for=wiring.settings.trust_forwarded_for)
        try:
            admit(wiring.limiter, ip)
            # Blank values kept, as the route (Starlette) keeps them: `event_time=` is the 422 the spec says.
            params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            try:
                query = BeaconQuery.model_validate(params)
            except ValidationError as exc:
                details = [{**d, "field": f"query.{d['field']}"} for d in validation_details(exc.errors())]
                fields = ", ".join(d["field"] for d in details)
                return await _error(
                    scope, receive, send, 422, "validation_error", f"invalid request: {fields}", details=details
                )
            await wiring.intake.accept(Beacon(kind, query), client_ip=ip)
        except ApiError as exc:
            return await _error(scope, receive, send, exc.status_code, exc.code, exc.message, exc.details, exc.headers)
        except Exception as exc:
            log.exception("beacon_failed", error=type(exc).__name__)
            return await _error(scope, receive, send, 500, "internal_error", "internal server error")
        if query.response == "204":
            await send({"type": "http.response.start", "status": 204, "headers": _NO_CACHE_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return 204
        await send({"type": "http.response.start", "status": 200, "headers": _GIF_HEADERS})
        await send({"type": "http.response.body", "body": PIXEL})
        return 200

    def _observe(self, path: str, status: int, seconds: float, method: str = "GET") -> None:
        children = self._metrics.get((path, status))
        if children is None:
            children = (
                REQUESTS.labels(self.service, method, path, str(status)),
                LATENCY.labels(self.service, method, path),
            )
            self._metrics[(path, status)] = children
        children[0].inc()
        children[1].observe(seconds)


async def _error(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    await error_response(status, code, message, details, headers)(scope, receive, send)
    return status
