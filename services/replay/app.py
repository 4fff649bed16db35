"""The replay service app: archive SQL and replay jobs (the pump)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from arq import create_pool
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.replay.api import router
from services.replay.progress import ProgressStore
from services.replay.settings import ReplaySettings
from shared.health import check_bucket, check_database, check_redis, check_stream
from shared.http import create_service_app, open_resources
from shared.redis import arq_redis_settings

UI_DIR = Path(__file__).parent / "ui"


def create_app(settings: ReplaySettings | None = None) -> FastAPI:
    """Build the replay service app."""
    settings = settings or ReplaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings):
            app.state.progress = ProgressStore(app.state.redis, settings.resource_prefix)
            app.state.arq = await create_pool(arq_redis_settings(settings))
            try:
                yield
            finally:
                await app.state.arq.aclose()

    app = create_service_app(
        settings=settings,
        title="Headwater replay",
        description="SQL over the event archive and the live stream; replay jobs re-emitting any slice to Kinesis.",
        lifespan=lifespan,
        readiness_checks={
            "redis": check_redis,
            "database": check_database,
            "raw_bucket": check_bucket("raw"),
            "events_stream": check_stream("events"),
        },
        openapi_tags=[
            {"name": "query", "description": "read-only SQL over the archive"},
            {"name": "replays", "description": "replay jobs"},
        ],
    )
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
