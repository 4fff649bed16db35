"""The transform service app: schema registry, transform runs, task chains, and their pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.transform.api import router
from services.transform.settings import TransformSettings
from services.transform.wiring import open_transform
from shared.health import check_bucket, check_database, check_redis
from shared.http import create_service_app
from shared.wiring import wiring_lifespan

UI_DIR = Path(__file__).parent / "ui"


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
    if UI_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
