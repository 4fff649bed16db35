"""The loader app: jobs API, runs, warehouse counts, traffic API and the jobs page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from arq import create_pool
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.loader.api import router
from services.loader.runtime import Runtime
from services.loader.settings import LoaderSettings
from shared.health import check_bucket, check_database, check_queue, check_redis
from shared.http import create_service_app, open_resources
from shared.redis import arq_redis_settings

UI_DIR = Path(__file__).parent / "ui"


def create_app(settings: LoaderSettings | None = None) -> FastAPI:
    """Build the loader app."""
    settings = settings or LoaderSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings):
            arq_pool = await create_pool(arq_redis_settings(settings), default_queue_name=settings.arq_queue)
            app.state.runtime = Runtime(
                settings=settings,
                engine=app.state.db_engine,
                sessions=app.state.sessions,
                aws=app.state.aws,
                arq=arq_pool,
            )
            try:
                yield
            finally:
                await arq_pool.aclose()

    app = create_service_app(
        settings=settings,
        title="Headwater loader",
        description="Load jobs: watch S3 for complete days, transform and load them into the warehouse; "
        "per-date runs, retries, retention, notifications and the advertising traffic API.",
        lifespan=lifespan,
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
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
