"""arq worker of the transform service: runs transform jobs and consumes ``transform-requests`` from SQS.

Start with ``python -m arq services.transform.worker.WorkerSettings``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from arq import func

from services.transform import jobs
from services.transform.chains.service import CHAIN_JOB, run_chain_job
from services.transform.consumer import consume_requests
from services.transform.dbsetup import ensure_tables
from services.transform.registry import ensure_builtin_schemas
from services.transform.runs import enqueue_run, unfinished_run_ids
from services.transform.settings import TransformSettings
from services.transform.storage import sync_client
from shared.aws import AwsClients
from shared.db import create_engine, session_factory
from shared.logging import configure_logging, get_logger
from shared.redis import arq_redis_settings

log = get_logger(__name__)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the clients the jobs use and start the SQS consumer."""
    settings: TransformSettings = ctx.get("settings") or TransformSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    ctx["settings"] = settings
    ctx["db_engine"] = create_engine(settings)
    if settings.environment != "production":
        await ensure_tables(ctx["db_engine"])
    ctx["sessions"] = session_factory(ctx["db_engine"])
    ctx["aws"] = AwsClients(settings)
    ctx["s3_sync"] = sync_client(settings)
    try:  # the worker may start before the app: both register the built-ins (idempotent)
        async with ctx["sessions"]() as session:
            await ensure_builtin_schemas(session=session, s3=await ctx["aws"].get("s3"), settings=settings)
    except Exception as exc:
        log.exception("builtin_schemas_failed", error=str(exc))
    # Runs whose job was lost (Redis flushed, worker killed) are enqueued again; live jobs make this a no-op.
    async with ctx["sessions"]() as session:
        for run_id in await unfinished_run_ids(session=session):
            await enqueue_run(ctx["redis"], settings, run_id)
    ctx["stop"] = asyncio.Event()
    ctx["consumer"] = (
        asyncio.create_task(consume_requests(ctx, ctx["stop"]), name="transform-requests")
        if settings.consume_requests
        else None
    )
    log.info("transform_worker_started", queue=settings.arq_queue)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Stop the consumer and close the clients."""
    ctx["stop"].set()
    consumer = ctx.get("consumer")
    if consumer is not None:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    await ctx["aws"].close()
    ctx["s3_sync"].close()
    await ctx["db_engine"].dispose()


def worker_functions(settings: TransformSettings) -> list[Any]:
    """Return the arq functions with their timeouts and retry budgets."""
    return [
        # The run counts its own attempts (settings.max_tries); arq's budget only has to outlast lock waits.
        func(jobs.run_transform, name="run_transform", timeout=settings.job_timeout_s, max_tries=10_000),
        func(run_chain_job, name=CHAIN_JOB, timeout=settings.job_timeout_s, max_tries=1),
    ]


_settings = TransformSettings()


class WorkerSettings:
    """arq settings: same Settings as the app."""

    functions = worker_functions(_settings)
    queue_name = _settings.arq_queue
    redis_settings = arq_redis_settings(_settings)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 2
    keep_result = 3600
