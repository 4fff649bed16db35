"""The arq job that executes a transform run, with retries on transient S3 errors, and its outcome messages."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import Retry

from services.transform.glue_catalog import register_run
from services.transform.local_partition import run_local_partition
from services.transform.models import TransformRun
from services.transform.registry import load_schema
from services.transform.run_store import save_run
from services.transform.settings import TransformSettings
from services.transform.spark.backends import run_spark_partition
from services.transform.wiring import TransformWiring
from shared.errors import NotFoundError
from shared.logging import get_logger
from shared.messages import LoadRequest, TransformFailed, utc_now
from shared.queues import send_message
from shared.retry import is_transient

log = get_logger(__name__)


def backoff_seconds(settings: TransformSettings, attempt: int) -> float:
    """Return the delay before retry ``attempt`` (exponential, capped at five minutes)."""
    return min(settings.retry_base_s * 2 ** (attempt - 1), 300.0)


async def _execute(wiring: TransformWiring, run: TransformRun) -> TransformRun:
    async with wiring.sessions() as session:
        schema = await load_schema(session=session, name=run.table_name, version=run.schema_version)
    if run.engine != "local":
        return await run_spark_partition(wiring, run, schema)
    outcome = await asyncio.to_thread(
        run_local_partition,
        wiring.s3_sync,
        wiring.settings,
        schema=schema,
        source_bucket=run.source_bucket,
        source_prefix=run.source_prefix,
        dt=run.dt,
        hour=run.hour,
        transform_id=run.id,
    )
    return await save_run(
        wiring.sessions,
        run,
        state="succeeded",
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        rows_bad=outcome.rows_bad,
        bytes_in=outcome.bytes_in,
        bytes_out=outcome.bytes_out,
        duration_s=outcome.duration_s,
        manifest_key=outcome.manifest_key,
        bad_rows_key=outcome.bad_rows_key,
        advertising_view_key=outcome.advertising_view_key,
        finished_at=utc_now(),
        error=None,
    )


def partition_lock(settings: TransformSettings, run: TransformRun) -> str:
    """Return the Redis key that serialises runs of one output partition."""
    hour = "" if run.hour is None else f"/hour={run.hour:02d}"
    return f"{settings.resource_prefix}:transform:lock:{run.table_name}/v{run.schema_version}/dt={run.dt}{hour}"


async def _acquire(redis: Any, lock: str, owner: str, settings: TransformSettings) -> bool:
    if await redis.set(lock, owner, nx=True, ex=settings.job_timeout_s + 60):
        return True
    return (await redis.get(lock) or b"").decode() == owner  # a retry of the run that holds it


async def _release(redis: Any, lock: str, owner: str) -> None:
    if (await redis.get(lock) or b"").decode() == owner:
        await redis.delete(lock)


async def send_outcome(wiring: TransformWiring, run: TransformRun) -> None:
    """Tell the loader: LoadRequest for a finished run, TransformFailed for a failed one."""
    settings = wiring.settings
    sqs = await wiring.aws.get("sqs")
    message: LoadRequest | TransformFailed
    if run.state == "succeeded":
        message = LoadRequest(
            job_id=run.job_id,
            run_id=run.loader_run_id,
            transform_id=run.id,
            table=run.table_name,
            schema_version=run.schema_version,
            dt=run.dt,
            bucket=settings.bucket("curated"),
            manifest_key=run.manifest_key or "",
            rows_in=run.rows_in or 0,
            rows_out=run.rows_out or 0,
            rows_bad=run.rows_bad or 0,
            advertising_view_key=run.advertising_view_key,
        )
    else:
        message = TransformFailed(
            job_id=run.job_id,
            run_id=run.loader_run_id,
            table=run.table_name,
            schema_version=run.schema_version,
            dt=run.dt,
            error=run.error or "transform failed",
        )
    await send_message(sqs, settings.queue("load-requests"), message)


async def _report(wiring: TransformWiring, run: TransformRun) -> None:
    """Send the run's outcome once; when SQS fails, retry the job (which then only sends)."""
    try:
        await register_run(wiring, run)  # the Glue catalog first: the loader's LoadRequest follows a findable table
        await send_outcome(wiring, run)
    except Exception as exc:
        log.warning("transform_outcome_not_sent", transform_id=run.id, error=str(exc))
        raise Retry(defer=wiring.settings.retry_base_s) from exc
    await save_run(wiring.sessions, run, outcome_sent=True)


async def run_transform(ctx: dict[str, Any], run_id: str) -> str:
    """Execute one transform run; retry transient errors with backoff, then report the outcome on SQS."""
    wiring: TransformWiring = ctx["wiring"]
    settings = wiring.settings
    async with wiring.sessions() as session:
        run = await session.get(TransformRun, run_id)
    if run is None:
        log.warning("transform_run_missing", transform_id=run_id)
        return "missing"
    if run.state in ("succeeded", "failed"):
        if not run.outcome_sent:  # finished, but sending the outcome failed last time
            await _report(wiring, run)
        return run.state  # otherwise a duplicate request for a finished run: nothing to do
    # Attempts are counted on the run, not by arq: waiting for the partition lock is not an attempt.
    attempt = run.attempts + 1
    lock = partition_lock(settings, run)
    if not await _acquire(wiring.redis, lock, run.id, settings):
        log.info("transform_waiting_for_partition", transform_id=run.id, lock=lock)
        raise Retry(defer=settings.lock_retry_s)  # another run of the same partition is publishing
    run = await save_run(
        wiring.sessions, run, state="running", attempts=attempt, started_at=run.started_at or utc_now()
    )
    log.info("transform_started", transform_id=run.id, table=run.table_name, dt=run.dt.isoformat(), attempt=attempt)
    try:
        run = await _execute(wiring, run)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, Retry):
            raise
        if is_transient(exc) and attempt < settings.max_tries:
            delay = backoff_seconds(settings, attempt)
            log.warning("transform_retrying", transform_id=run.id, attempt=attempt, delay_s=delay, error=str(exc))
            await save_run(wiring.sessions, run, state="queued", error=f"attempt {attempt}: {exc}")
            raise Retry(defer=delay) from exc
        reason = str(exc) if isinstance(exc, NotFoundError) else f"{type(exc).__name__}: {exc}"
        log.exception("transform_failed", transform_id=run.id, error=reason)
        run = await save_run(wiring.sessions, run, state="failed", error=reason[:2000], finished_at=utc_now())
    finally:
        await _release(wiring.redis, lock, run.id)
    if run.state in ("succeeded", "failed"):
        await _report(wiring, run)
    log.info("transform_finished", transform_id=run.id, state=run.state, rows_out=run.rows_out)
    return run.state
