"""The loader app: jobs API, runs, warehouse counts, traffic API; its old page redirects to the console."""

from __future__ import annotations

from fastapi import FastAPI

from services.loader.api import router
from services.loader.settings import LoaderSettings
from services.loader.wiring import open_loader
from shared.console_link import page_moved_router
from shared.health import check_bucket, check_database, check_queue, check_redis
from shared.http import create_service_app
from shared.wiring import wiring_lifespan


def create_app(settings: LoaderSettings | None = None) -> FastAPI:
    """Build the loader app."""
    settings = settings or LoaderSettings()
    app = create_service_app(
        settings=settings,
        title="Headwater loader",
        description="Load jobs: watch S3 for complete days, transform and load them into the warehouse; "
        "per-date runs, retries, retention, notifications and the advertising traffic API.\n\n"
        "The traffic API is served at `/v1/advertising/traffic/{ad_id}`; the seed path "
        "`/advertising/traffic/{ad_id}` is kept as an undocumented alias for existing clients.",
        lifespan=wiring_lifespan(open_loader, settings),
        readiness_checks={
            "redis": check_redis,
            "database": check_database,
            "curated_bucket": check_bucket("curated"),
            "s3_events_queue": check_queue("s3-events"),
            "transform_requests_queue": check_queue("transform-requests"),
            "load_requests_queue": check_queue("load-requests"),
        },
        openapi_tags=[
            {"name": "jobs", "description": "Load jobs"},
            {"name": "runs", "description": "Per-date runs and history"},
            {"name": "warehouse", "description": "Warehouse reads"},
            {"name": "traffic", "description": "Advertising traffic (DynamoDB)"},
        ],
    )
    app.include_router(router)
    app.include_router(page_moved_router({}, "/jobs"))
    return app
