"""The app factory every service uses: error format, /healthz, /readyz, /metrics, request metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import install_error_handlers
from shared.guard import KeyFirstMiddleware
from shared.health import ReadinessCheck, run_checks
from shared.logging import configure_logging
from shared.openapi import headwater_version, install_openapi, operation_id
from shared.settings import HeadwaterSettings
from shared.wiring import Clients

REQUESTS = Counter("headwater_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "headwater_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@asynccontextmanager
async def open_resources(app: FastAPI, settings: HeadwaterSettings) -> AsyncIterator[None]:
    """Transitional: open the common clients as ``app.state.wiring`` (services move to ``wiring_lifespan``)."""
    wiring = Clients(**Clients.base_kwargs(settings))
    app.state.wiring = wiring
    app.state.settings, app.state.redis, app.state.aws = settings, wiring.redis, wiring.aws
    app.state.db_engine, app.state.sessions = wiring.db_engine, wiring.sessions
    try:
        yield
    finally:
        await wiring.close()


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"]
    service: str


class Readiness(BaseModel):
    """Each dependency's check: "ok" or the error."""

    status: Literal["ready", "not_ready"]
    service: str
    checks: dict[str, str]


class RequestMetricsMiddleware:
    """Count requests and time them per route template (pure ASGI: cheap on the hot path)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            LATENCY.labels(self.service, method, template).observe(time.perf_counter() - started)
            REQUESTS.labels(self.service, method, template, str(status["code"])).inc()


def create_service_app(
    *,
    settings: HeadwaterSettings,
    title: str,
    description: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    readiness_checks: dict[str, ReadinessCheck],
    openapi_tags: list[dict[str, Any]] | None = None,
) -> FastAPI:
    """Create a service's FastAPI app with the wiring every service shares."""
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    app = FastAPI(
        title=title,
        description=description,
        version=headwater_version(),
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        generate_unique_id_function=operation_id,
    )
    install_openapi(app)
    app.state.settings = settings
    install_error_handlers(app)
    service = settings.service_name

    # Added last, so it runs first after the metrics: keys are checked before any body is read.
    app.add_middleware(KeyFirstMiddleware, fastapi_app=app, default_max_body_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, service=service)

    @app.get("/healthz", tags=["operations"], summary="Process is up")
    async def get_health() -> Health:
        """Answer while the process serves requests."""
        return Health(status="ok", service=service)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Dependencies answer",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency does not answer"}},
    )
    async def get_readiness() -> JSONResponse:
        """Check each dependency with a short timeout; 503 when one fails."""
        results = await run_checks(app.state.wiring, readiness_checks, settings.readiness_timeout_s)
        ready = all(result == "ok" for result in results.values())
        body = Readiness(status="ready" if ready else "not_ready", service=service, checks=results)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def get_metrics() -> Response:
        """Expose the Prometheus metrics in the text format."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
