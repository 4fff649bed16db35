"""The poller's API app: device registry, latest readings, shard map, statistics; its old page redirects to the console.

The app never polls: it opens the wiring for its registry; the worker (or ``headwater poller``) polls.
"""

from __future__ import annotations

from fastapi import FastAPI

from services.poller.api import legacy, router
from services.poller.settings import PollerSettings
from services.poller.wiring import open_poller_api
from shared.console_link import page_moved_router
from shared.health import check_bucket, check_database, check_redis
from shared.http import create_service_app
from shared.wiring import wiring_lifespan


def create_app(settings: PollerSettings | None = None) -> FastAPI:
    """Create the poller's API app."""
    settings = settings or PollerSettings()
    app = create_service_app(
        settings=settings,
        title="Headwater poller",
        description=(
            "Polls Rainforest Eagle meters every few seconds across sharded replicas, keeps hourly JSON-lines logs, "
            "rotates them to S3 and forwards readings to ingest. Writes need the `devices:admin` scope, reads `read`."
            "\n\nThe original logger's routes (`/api/users/`, `/api/users/{cloud_id}`, `/api/event/{cloud_id}`, "
            "which took passwords in the URL) are kept as undocumented aliases that answer 410 Gone with a pointer "
            "to their `/v1` replacement."
        ),
        lifespan=wiring_lifespan(open_poller_api, settings),
        readiness_checks={"redis": check_redis, "database": check_database, "logs_bucket": check_bucket("logs")},
        openapi_tags=[
            {"name": "devices", "description": "Device registry and readings"},
            {"name": "shards", "description": "How the fleet is split across replicas"},
        ],
    )
    app.include_router(router)
    app.include_router(legacy)
    app.include_router(page_moved_router({}, "/devices"))
    return app
