"""The poller's API app: device registry, latest readings, shard map, statistics and the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.poller.api import legacy, router
from services.poller.crypto import fernet_from_settings
from services.poller.registry import Registry
from services.poller.settings import PollerSettings
from shared.health import check_bucket, check_database, check_redis
from shared.http import create_service_app, open_resources

UI_DIR = Path(__file__).parent / "ui"


def create_app(settings: PollerSettings | None = None) -> FastAPI:
    """Create the poller's API app."""
    settings = settings or PollerSettings()
    fernet = fernet_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings):
            app.state.registry = Registry(
                app.state.redis, prefix=settings.redis_prefix, fernet=fernet, shard_count=settings.shard_count
            )
            yield

    app = create_service_app(
        settings=settings,
        title="Headwater poller",
        description=(
            "Polls Rainforest Eagle meters every few seconds across sharded replicas, keeps hourly JSON-lines logs, "
            "rotates them to S3 and forwards readings to ingest. Writes need the `devices:admin` scope, reads `read`."
        ),
        lifespan=lifespan,
        readiness_checks={"redis": check_redis, "database": check_database, "logs_bucket": check_bucket("logs")},
        openapi_tags=[
            {"name": "devices", "description": "Device registry and readings"},
            {"name": "shards", "description": "How the fleet is split across replicas"},
            {"name": "legacy", "description": "Retired routes of the original logger (410 with a pointer)"},
        ],
    )
    app.include_router(router)
    app.include_router(legacy)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
