"""The app factory every service uses: error format, /healthz, /readyz, /metrics, request metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.aws import AwsClients
from shared.db import create_engine, session_factory
from shared.errors import ErrorResponse, install_error_handlers
from shared.health import ReadinessCheck, run_checks
from shared.logging import configure_logging
from shared.redis import open_redis
from shared.settings import HeadwaterSettings

REQUESTS = Counter("headwater_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"])
LATENCY = Histogram(
    "headwater_http_request_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Error shapes documented on every route of every service.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 429, 503)
}


@asynccontextmanager
async def open_resources(
    app: FastAPI, settings: HeadwaterSettings, *, redis: bool = True, database: bool = True, aws: bool = True
) -> AsyncIterator[None]:
    """Open the shared clients on ``app.state`` for the app's lifetime and close them after."""
    app.state.settings = settings
    if redis:
        app.state.redis = open_redis(settings)
    if database:
        app.state.db_engine = create_engine(settings)
        app.state.sessions = session_factory(app.state.db_engine)
    if aws:
        app.state.aws = AwsClients(settings)
    try:
        yield
    finally:
        if aws:
            await app.state.aws.close()
        if database:
            await app.state.db_engine.dispose()
        if redis:
            await app.state.redis.aclose()


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
        version="0.1.0",
        lifespan=lifespan,
        openapi_tags=openapi_tags,
        responses=ERROR_RESPONSES,
    )
    app.state.settings = settings
    install_error_handlers(app)
    service = settings.service_name

    app.add_middleware(RequestMetricsMiddleware, service=service)

    @app.get("/healthz", tags=["operations"], summary="Process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["operations"], summary="Dependencies answer")
    async def readyz() -> JSONResponse:
        results = await run_checks(app, readiness_checks, settings.readiness_timeout_s)
        ready = all(result == "ok" for result in results.values())
        body = {"status": "ready" if ready else "not_ready", "service": service, "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", include_in_schema=True)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
