"""The replay service app: archive SQL and replay jobs (the pump)."""

from __future__ import annotations

from fastapi import FastAPI

from services.replay.api import router
from services.replay.archives_api import router as archives_router
from services.replay.settings import ReplaySettings
from services.replay.wiring import open_replay
from shared.console_link import page_moved_router
from shared.health import check_bucket, check_database, check_redis, check_stream
from shared.http import create_service_app
from shared.wiring import wiring_lifespan


def create_app(settings: ReplaySettings | None = None) -> FastAPI:
    """Build the replay service app."""
    settings = settings or ReplaySettings()
    app = create_service_app(
        settings=settings,
        title="Headwater replay",
        description="SQL over the event archive and the live stream; replay jobs re-emitting any slice to Kinesis.",
        lifespan=wiring_lifespan(open_replay, settings),
        readiness_checks={
            "redis": check_redis,
            "database": check_database,
            "raw_bucket": check_bucket("raw"),
            "events_stream": check_stream("events"),
        },
        openapi_tags=[
            {"name": "query", "description": "read-only SQL over the archive"},
            {"name": "replays", "description": "replay jobs"},
            {"name": "archives", "description": "archiving Kinesis streams Headwater does not write"},
        ],
    )
    app.include_router(router)
    app.include_router(archives_router)
    app.include_router(page_moved_router({}, "/query"))
    return app
