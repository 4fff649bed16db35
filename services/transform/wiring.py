"""Transform's composition root: the clients the API and the worker share, built once per process.

The API's lifespan is ``wiring_lifespan(open_transform, settings)``; the worker opens the same wiring in
``on_startup`` (see ``worker.py``) and adds its own steps (re-enqueue lost runs, the SQS consumer).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from services.transform.dbsetup import ensure_tables
from services.transform.registry import ensure_builtin_schemas
from services.transform.settings import TransformSettings
from services.transform.storage import sync_client
from shared.logging import get_logger
from shared.wiring import Clients

log = get_logger(__name__)


@dataclass(kw_only=True)
class TransformWiring(Clients):
    """The common clients plus transform's own: a thread-safe boto3 S3 client for the engine threads."""

    settings: TransformSettings
    s3_sync: Any


async def open_transform(settings: TransformSettings, *, job_queue: bool = True) -> TransformWiring:
    """Open transform's clients, create its tables outside production and register the built-in schemas.

    ``job_queue=False`` leaves ``arq`` unset: the worker's own Redis connection is its pool.
    """
    wiring = TransformWiring(**Clients.base_kwargs(settings), s3_sync=sync_client(settings))
    wiring.on_close(lambda: asyncio.to_thread(wiring.s3_sync.close))
    try:
        if settings.environment != "production":  # production runs `headwater migrate` first
            await ensure_tables(wiring.db_engine)
        if job_queue:
            await wiring.open_job_queue()
    except BaseException:
        await wiring.close()
        raise
    await _register_builtin_schemas(wiring)
    return wiring


async def _register_builtin_schemas(wiring: TransformWiring) -> None:
    # The app and the worker both register them (idempotent): either may start first. A failure here is a
    # dependency that does not answer yet; readiness reports it and the process still starts.
    try:
        async with wiring.sessions() as session:
            await ensure_builtin_schemas(session=session, s3=await wiring.aws.get("s3"), settings=wiring.settings)
    except Exception as exc:
        log.exception("builtin_schemas_failed", error=str(exc))
