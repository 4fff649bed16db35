"""Loads: accept LoadRequest / TransformFailed from transform, load a date into the job's warehouse.

The SQS consumer only records the hand-off and enqueues an arq job ``load_run`` (keyed by run and
transform id, so a redelivered message never loads twice); the job reads the manifest, loads the Parquet
files (replacing the date exactly once), fills the traffic table, notifies, and dispatches the next date.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.loader import notify, scanner
from services.loader import runs as run_service
from services.loader.models import IN_FLIGHT, Job, JobRun, JobState, RunState, utc_now
from services.loader.s3io import download, read_object, split_s3_url
from services.loader.schema_store import load_schema
from services.loader.traffic import upsert_view
from services.loader.warehouse import LoadInput, open_job_adapter
from services.loader.warehouse.redshift import RedshiftWarehouse
from services.loader.wiring import LoaderWiring
from shared.contracts import Manifest
from shared.logging import get_logger
from shared.messages import LoadRequest, TransformFailed, parse_message
from shared.orcparts import is_orc, orc_to_parquet
from shared.queues import Unprocessable

log = get_logger(__name__)


class LoadError(RuntimeError):
    """A load that cannot succeed as is (row count mismatch, bad manifest)."""


async def _run_and_job(
    wiring: LoaderWiring, job_id: int | None, run_id: int | None, dt: date
) -> tuple[JobRun, Job] | None:
    async with wiring.sessions() as session:
        run = await run_service.get_run(session, run_id) if run_id is not None else None
        if run is None and job_id is not None:
            run = await run_service.find_run(session, job_id, dt)
        if run is None or (job_id is not None and run.job_id != job_id) or run.dt != dt:
            return None
        job = await session.get(Job, run.job_id)
        return (run, job) if job is not None else None


async def _cancel_run(wiring: LoaderWiring, run: JobRun) -> None:
    """A cancelled job stops after the step in flight: the date ends cancelled, not loaded."""
    async with wiring.sessions() as session:
        if await run_service.transition(session, run.id or 0, IN_FLIGHT, RunState.CANCELLED, finished_at=utc_now()):
            await run_service.log_event(session, job_id=run.job_id, dt=run.dt, event="cancelled")
            await session.commit()


async def handle_load_queue_message(wiring: LoaderWiring, message: dict[str, Any]) -> None:
    """Handle one message of the load-requests queue (LoadRequest or TransformFailed)."""
    try:
        envelope = parse_message(message["Body"])
    except ValidationError as exc:
        # Retrying cannot help: straight to the dead-letter queue, where `headwater dlq` shows it.
        raise Unprocessable(f"not a message envelope: {str(exc)[:500]}") from exc
    if isinstance(envelope, LoadRequest):
        await accept_load_request(wiring, envelope)
    elif isinstance(envelope, TransformFailed):
        await handle_transform_failed(wiring, envelope)
    else:
        raise Unprocessable(f"unexpected message type {envelope.type!r} on load-requests")


async def accept_load_request(wiring: LoaderWiring, request: LoadRequest) -> bool:
    """Move the date to loading and enqueue its load job; return whether a load was enqueued."""
    found = await _run_and_job(wiring, request.job_id, request.run_id, request.dt)
    if found is None:
        log.warning("load_request_unknown_run", job_id=request.job_id, run_id=request.run_id)
        return False
    run, job = found
    assert run.id is not None
    if job.state == JobState.CANCELLED:
        await _cancel_run(wiring, run)
        return False
    async with wiring.sessions() as session:
        moved = await run_service.transition(
            session,
            run.id,
            [RunState.TRANSFORMING],
            RunState.LOADING,
            transform_id=request.transform_id,
            rows_in=request.rows_in,
            rows_bad=request.rows_bad,
            load_started_at=utc_now(),
            error=None,
        )
        redelivered = run.state == RunState.LOADING and run.transform_id == request.transform_id
        if not moved and not redelivered:
            log.info("load_request_ignored", run_id=run.id, state=run.state, transform_id=request.transform_id)
            return False
        if moved:
            await run_service.log_event(
                session, job_id=run.job_id, dt=run.dt, event="transformed", detail=f"{request.rows_out} rows"
            )
            await session.commit()
    await wiring.jobs.enqueue_job(
        "load_run", run.id, request.model_dump_json(), _job_id=f"load:{run.id}:{request.transform_id}"
    )
    return True


async def handle_transform_failed(wiring: LoaderWiring, failure: TransformFailed) -> None:
    """Count the failed transform as an attempt: retry after a backoff or mark the date failed."""
    found = await _run_and_job(wiring, failure.job_id, failure.run_id, failure.dt)
    if found is None:
        return
    run, job = found
    if run.state != RunState.TRANSFORMING:
        return
    if job.state == JobState.CANCELLED:
        await _cancel_run(wiring, run)
        return
    await record_failure(wiring, run, job, f"transform failed: {failure.error}")


async def record_failure(wiring: LoaderWiring, run: JobRun, job: Job, error: str) -> None:
    """Record a failed attempt; notify when the date is failed for good; dispatch what is next."""
    settings = wiring.settings
    async with wiring.sessions() as session:
        fresh = await run_service.get_run(session, run.id or 0)
        if fresh is None:
            return
        exhausted = await run_service.fail_attempt(
            session,
            fresh,
            error,
            max_attempts=settings.max_attempts,
            base_s=settings.retry_backoff_s,
            max_s=settings.retry_backoff_max_s,
        )
    log.warning("run_attempt_failed", job_id=job.id, run_id=run.id, dt=run.dt.isoformat(), error=error[:300])
    if exhausted:
        await notify.queue_notification(
            wiring.redis,
            settings,
            job_id=job.id,
            job_name=job.name,
            kind="failed",
            dt=run.dt.isoformat(),
            detail=error[:500],
            recipients=job.recipients,
        )
    await scanner.dispatch_job(wiring, job.id or 0)


async def _load_input(s3: Any, request: LoadRequest) -> LoadInput:
    try:
        manifest = Manifest.decode(await read_object(s3, request.bucket, request.manifest_key))
    except ValidationError as exc:
        raise LoadError(f"manifest {request.manifest_key} is not a manifest: {exc}") from exc
    urls = [entry.url for entry in manifest.entries]

    async def _download(folder: Path) -> list[Path]:
        paths = []
        for index, url in enumerate(urls):
            bucket, key = split_s3_url(url)
            target = folder / f"part-{index:05d}.parquet"
            if is_orc(key):  # the warehouses read Parquet: rewrite the ORC part, then let it go
                fetched = await download(s3, bucket, key, folder / f"part-{index:05d}.orc")
                await asyncio.to_thread(orc_to_parquet, fetched, target)
                fetched.unlink()
                paths.append(target)
            else:
                paths.append(await download(s3, bucket, key, target))
        return paths

    return LoadInput(
        manifest_url=f"s3://{request.bucket}/{request.manifest_key}",
        expected_rows=manifest.headwater.rows,
        download=_download,
        file_format=manifest.headwater.format,
    )


async def perform_load(wiring: LoaderWiring, job: Job, request: LoadRequest) -> int:
    """Load one date into the job's warehouse and fill the traffic table; return rows loaded."""
    s3 = await wiring.aws.get("s3")
    data = await _load_input(s3, request)
    schema = await load_schema(s3, wiring.settings, job.schema_name, request.schema_version)
    adapter = open_job_adapter(job, wiring.settings, wiring.aws)
    rows = await adapter.load_date(job.table_name, schema, request.dt, data)
    if data.expected_rows is not None and rows != data.expected_rows:
        raise LoadError(f"loaded {rows} rows but the manifest lists {data.expected_rows}")
    if request.advertising_view_key:
        await upsert_view(
            s3,
            await wiring.aws.get("dynamodb"),
            wiring.settings,
            request.bucket,
            request.advertising_view_key,
            request.dt,
        )
        if isinstance(adapter, RedshiftWarehouse):  # the view is a Redshift table too, next to the events
            view_url = f"s3://{request.bucket}/{request.advertising_view_key}"
            await adapter.load_advertising_view(job.table_name, request.dt, view_url)
    return rows


async def maybe_maintain(wiring: LoaderWiring, job: Job, run: JobRun) -> bool:
    """Every ``maintenance_every_loads`` loads of a table, run its VACUUM/ANALYZE; log it in the history."""
    every = wiring.settings.maintenance_every_loads
    if every <= 0:
        return False
    key = f"loader:{wiring.settings.resource_prefix}:loads:{job.warehouse}:{job.table_name}"
    if int(await wiring.redis.incr(key)) % every != 0:
        return False
    try:
        await open_job_adapter(job, wiring.settings, wiring.aws).maintain(job.table_name)
    except Exception as exc:  # maintenance must never undo a load
        log.warning("warehouse_maintenance_failed", table=job.table_name, error=str(exc))
        return False
    async with wiring.sessions() as session:
        await run_service.log_event(
            session, job_id=run.job_id, dt=run.dt, event="maintained", detail=f"{job.warehouse} {job.table_name}"
        )
        await session.commit()
    log.info("warehouse_maintained", warehouse=job.warehouse, table=job.table_name)
    return True


async def mark_loaded(wiring: LoaderWiring, run: JobRun, job: Job, rows: int) -> None:
    """Record the load, notify, and dispatch the job's next date."""
    async with wiring.sessions() as session:
        done = await run_service.transition(
            session,
            run.id or 0,
            [RunState.LOADING],
            RunState.LOADED,
            rows_loaded=rows,
            finished_at=utc_now(),
            error=None,
            next_attempt_at=None,
        )
        if done:
            await run_service.log_event(session, job_id=run.job_id, dt=run.dt, event="loaded", detail=f"{rows} rows")
            await session.commit()
    if done:
        # Late events may have landed after transform read the day: then it goes again (dispatched below).
        async with wiring.sessions() as session:
            await scanner.reload_if_late(session, run.id or 0)
    if done:
        log.info("date_loaded", job_id=job.id, run_id=run.id, dt=run.dt.isoformat(), rows=rows)
        await notify.queue_notification(
            wiring.redis,
            wiring.settings,
            job_id=job.id,
            job_name=job.name,
            kind="loaded",
            dt=run.dt.isoformat(),
            detail=f"{rows} rows into {job.warehouse} table {job.table_name}",
            recipients=job.recipients,
        )
    await scanner.dispatch_job(wiring, job.id or 0)
    if done:
        await maybe_maintain(wiring, job, run)


async def current(wiring: LoaderWiring, run_id: int) -> tuple[JobRun, Job] | None:
    """Return the run and its job as stored now."""
    async with wiring.sessions() as session:
        run = await run_service.get_run(session, run_id)
        job = await session.get(Job, run.job_id) if run else None
    return (run, job) if run and job else None


async def note_transient(wiring: LoaderWiring, run: JobRun, error: str, attempt: int) -> None:
    """Record a transient load error that will be retried."""
    async with wiring.sessions() as session:
        await run_service.log_event(
            session, job_id=run.job_id, dt=run.dt, event="load_retry", detail=f"try {attempt}: {error}"
        )
        stored = await run_service.get_run(session, run.id or 0)
        if stored is not None:
            stored.error = f"retrying: {error}"[:4000]
            session.add(stored)
        await session.commit()
