"""The transform service app: schema registry, transform runs API, and its page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from arq import create_pool
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.transform.api import router
from services.transform.chains_api import router as chains_router
from services.transform.dbsetup import ensure_tables
from services.transform.registry import ensure_builtin_schemas
from services.transform.settings import TransformSettings
from shared.health import check_bucket, check_database, check_redis
from shared.http import create_service_app, open_resources
from shared.logging import get_logger
from shared.redis import arq_redis_settings

log = get_logger(__name__)
UI_DIR = Path(__file__).parent / "ui"


def create_app(settings: TransformSettings | None = None) -> FastAPI:
    """Build the transform app."""
    settings = settings or TransformSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(app, settings):
            if settings.environment != "production":  # production runs `headwater migrate` first
                await ensure_tables(app.state.db_engine)
            app.state.arq = await create_pool(arq_redis_settings(settings))
            try:
                try:
                    async with app.state.sessions() as session:
                        await ensure_builtin_schemas(
                            session=session, s3=await app.state.aws.get("s3"), settings=settings
                        )
                except Exception as exc:  # readiness reports the dependency; the app still starts
                    log.exception("builtin_schemas_failed", error=str(exc))
                yield
            finally:
                await app.state.arq.aclose()

    app = create_service_app(
        settings=settings,
        title="Headwater transform",
        description="Table schemas (registry, log2schema) and transform runs from raw JSON logs to curated Parquet.",
        lifespan=lifespan,
        readiness_checks={"redis": check_redis, "database": check_database, "curated_bucket": check_bucket("curated")},
        openapi_tags=[
            {"name": "schemas", "description": "Versioned table schemas"},
            {"name": "transforms", "description": "Transform runs (local, EMR, Glue)"},
            {"name": "chains", "description": "Dependency-based, idempotent task chains and their DAG"},
        ],
    )
    app.include_router(router)
    app.include_router(chains_router)
    if UI_DIR.is_dir():
        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    return app
