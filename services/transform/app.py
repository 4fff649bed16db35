"""The transform service app: schema registry, transform runs, task chains (their old pages redirect to the console)."""

from __future__ import annotations

from fastapi import FastAPI

from services.transform.api import router
from services.transform.settings import TransformSettings
from services.transform.wiring import open_transform
from shared.console_link import page_moved_router
from shared.health import check_bucket, check_database, check_redis
from shared.http import create_service_app
from shared.wiring import wiring_lifespan


def create_app(settings: TransformSettings | None = None) -> FastAPI:
    """Build the transform app."""
    settings = settings or TransformSettings()
    app = create_service_app(
        settings=settings,
        title="Headwater transform",
        description="Table schemas (registry, log2schema) and transform runs from raw JSON logs to curated Parquet.",
        lifespan=wiring_lifespan(open_transform, settings),
        readiness_checks={"redis": check_redis, "database": check_database, "curated_bucket": check_bucket("curated")},
        openapi_tags=[
            {"name": "schemas", "description": "Versioned table schemas"},
            {"name": "transforms", "description": "Transform runs (local, EMR, Glue)"},
            {"name": "chains", "description": "Dependency-based, idempotent task chains and their DAG"},
        ],
    )
    app.include_router(router)
    app.include_router(page_moved_router({"chains.html": "/chains"}, "/schemas"))
    return app
