"""The ingest app: routes and the beacon fast path; the wiring (spool, shipper, ...) opens in the lifespan."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from services.ingest.api import router
from services.ingest.fastpath import BeaconFastPath
from services.ingest.sdk_api import router as sdk_router
from services.ingest.settings import IngestSettings
from services.ingest.wiring import check_spool, open_ingest
from shared.console_link import page_moved_router
from shared.health import check_database, check_redis
from shared.http import create_service_app
from shared.wiring import wiring_lifespan


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Create the ingest service app."""
    settings = settings or IngestSettings()
    app = create_service_app(
        settings=settings,
        title="Headwater ingest",
        description="The front door: beacons, event batches and meter reads, made durable in a local spool and "
        "shipped to the raw archive (S3) and the events stream (Kinesis); live per-minute counters.",
        lifespan=wiring_lifespan(open_ingest, settings),
        # Only what accepting needs: the spool exists so that ingest keeps accepting while S3/Kinesis are away.
        readiness_checks={"redis": check_redis, "database": check_database, "spool": check_spool},
        openapi_tags=[
            {"name": "beacons", "description": "Public impression and click beacons (rate-limited per client)."},
            {"name": "events", "description": "Typed events and meter reads (API key with ingest:write)."},
            {"name": "realtime", "description": "Per-minute impressions, clicks and CTR."},
            {"name": "bad rows", "description": "Accepted events that failed validation when shipped."},
            {"name": "analytics SDKs", "description": "Snowplow and Segment trackers, unchanged, at their paths."},
        ],
    )
    app.include_router(router)
    app.include_router(sdk_router)
    if settings.beacon_fast_path:
        app.add_middleware(BeaconFastPath, state=app.state, service=settings.service_name)
    if settings.cors_origins:
        # Browser trackers post cross-origin with credentials: only the configured origins, echoed (never '*').
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization"],
            max_age=600,
        )
    app.include_router(page_moved_router({}, "/live"))
    return app
