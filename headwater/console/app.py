"""The console's ASGI app: the static shell at ``/``, ``/api/<service>/...`` proxied, and a few console routes.

``/console/whoami`` tells the shell which scopes the signed-in key holds (checked against the metadata database the
services use, with the same argon2 verifier and failure limits), so the shell can disable what the key cannot do.
Any other GET that is not a file answers the shell's ``index.html``: every job, run, replay and device has its own
URL, and the shell's router reads it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from headwater.console import log2schema
from headwater.console.auth import principal_of
from headwater.console.proxy import forward
from headwater.console.settings import ConsoleSettings
from shared.auth import KeyVerifier
from shared.db import create_engine, session_factory
from shared.errors import NotFoundError, error_response, install_error_handlers
from shared.logging import configure_logging

STATIC = Path(__file__).parent / "static"
# The shell's files change with the code: revalidate each time (cheap: ETag / Last-Modified answer 304).
NO_STALE = {"Cache-Control": "no-cache"}


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    """Build the console app (``uvicorn --factory headwater.console.app:create_app``)."""
    settings = settings or ConsoleSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(
            connect=settings.console_connect_timeout_s, read=None, write=settings.console_write_timeout_s, pool=10.0
        )
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        engine = create_engine(settings)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            app.state.http = client
            app.state.verifier = KeyVerifier(session_factory(engine))
            try:
                yield
            finally:
                await engine.dispose()

    app = FastAPI(title="Headwater console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.state.settings = settings
    upstreams = settings.console_upstreams

    def upstream(service: str) -> str:
        try:
            return upstreams[service]
        except KeyError:
            raise NotFoundError(f"no service named {service!r}; known: {', '.join(upstreams)}") from None

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        # The console serves files and forwards; each service's readiness is shown in the shell's header.
        return {"status": "ready", "service": "console"}

    @app.get("/console/config", include_in_schema=False)
    async def config() -> dict[str, Any]:
        services = [{"name": name, "api": f"/api/{name}", "docs": f"/console/docs/{name}"} for name in upstreams]
        return {"services": services}

    @app.get("/console/whoami", include_in_schema=False)
    async def whoami(request: Request) -> dict[str, Any]:
        principal = await principal_of(request)
        return {"key_id": principal.key_id, "scopes": sorted(principal.scopes)}

    @app.get("/console/docs/{service}", include_in_schema=False)
    async def swagger(service: str) -> HTMLResponse:
        upstream(service)
        return get_swagger_ui_html(openapi_url=f"/console/openapi/{service}.json", title=f"Headwater {service} API")

    @app.get("/console/openapi/{service}.json", include_in_schema=False)
    async def openapi(service: str, request: Request) -> Response:
        # The service's own spec, with a server entry so Swagger's "Try it out" goes through this origin.
        try:
            answer = await request.app.state.http.get(f"{upstream(service)}/openapi.json")
        except httpx.HTTPError:
            return error_response(502, "bad_gateway", f"{service} did not answer")
        spec = answer.json()
        spec["servers"] = [{"url": f"/api/{service}"}]
        return JSONResponse(spec)

    app.include_router(log2schema.router)

    @app.api_route(
        "/api/{service}/{path:path}",
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    async def proxy(service: str, path: str, request: Request) -> Response:
        return await forward(request.app.state.http, request, upstream(service), path)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/{page:path}", include_in_schema=False)
    async def shell(page: str) -> FileResponse:
        if page.startswith(("api/", "console/", "static/")):
            raise NotFoundError(f"no such path: /{page}")
        return FileResponse(STATIC / "index.html", headers=NO_STALE)

    return app
