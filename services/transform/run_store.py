"""The store of transform runs: create them (from the API or from SQS requests), enqueue, list, read and save them."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.transform.models import TransformCreate, TransformRead, TransformRun
from services.transform.registry import get_schema_row
from shared.errors import NotFoundError, UnprocessableError
from shared.messages import TransformRequest
from shared.settings import HeadwaterSettings

RUN_JOB = "run_transform"


def job_id(run_id: str) -> str:
    """Return the arq job id of a run: one job per run, so duplicate requests are no-ops."""
    return f"transform:{run_id}"


def to_read(run: TransformRun, settings: HeadwaterSettings) -> TransformRead:
    """Shape a run for the API."""
    curated, bad = settings.bucket("curated"), settings.bucket("bad-rows")
    return TransformRead(
        id=run.id,
        table=run.table_name,
        version=run.schema_version,
        dt=run.dt,
        hour=run.hour,
        engine=run.engine,
        state=run.state,
        source=f"s3://{run.source_bucket}/{run.source_prefix}",
        attempts=run.attempts,
        rows_in=run.rows_in,
        rows_out=run.rows_out,
        rows_bad=run.rows_bad,
        bytes_in=run.bytes_in,
        bytes_out=run.bytes_out,
        duration_s=run.duration_s,
        engine_run_id=run.engine_run_id,
        engine_state=run.engine_state,
        engine_states=[s for s in run.engine_states.split(",") if s],
        log_url=run.log_url,
        manifest_url=f"s3://{curated}/{run.manifest_key}" if run.manifest_key else None,
        bad_rows_url=f"s3://{bad}/{run.bad_rows_key}" if run.bad_rows_key else None,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def split_source(source_path: str, day: date) -> tuple[str, str]:
    """Return (bucket, prefix) of a source path template for one date."""
    path = source_path.replace("{dt}", day.isoformat())[len("s3://") :]
    bucket, _, prefix = path.partition("/")
    return bucket, prefix


async def enqueue_run(arq: Any, settings: HeadwaterSettings, run_id: str) -> None:
    """Enqueue a run's job (a no-op when the job is already queued, running or recently done)."""
    await arq.enqueue_job(RUN_JOB, run_id, _job_id=job_id(run_id), _queue_name=settings.arq_queue)


async def create_runs(
    *, session: AsyncSession, arq: Any, settings: HeadwaterSettings, request: TransformCreate
) -> list[TransformRun]:
    """Create and enqueue one run per requested date."""
    await get_schema_row(session=session, name=request.table, version=request.version)
    runs = []
    for day in request.dates():
        bucket, prefix = split_source(request.source_path, day)
        if not prefix:
            raise UnprocessableError(
                "source_path needs a key prefix", details=[{"field": "source_path", "reason": "no prefix"}]
            )
        run = TransformRun(
            id=uuid.uuid4().hex,
            table_name=request.table,
            schema_version=request.version,
            dt=day,
            hour=request.hour,
            engine=request.engine,
            source_bucket=bucket,
            source_prefix=prefix,
        )
        session.add(run)
        runs.append(run)
    await session.commit()
    for run in runs:
        await enqueue_run(arq, settings, run.id)
    return runs


async def run_from_request(*, session: AsyncSession, request: TransformRequest) -> tuple[TransformRun, bool]:
    """Return the run for an SQS request, creating it the first time (the message id is the run id)."""
    existing = await session.get(TransformRun, request.id)
    if existing is not None:
        return existing, False
    run = TransformRun(
        id=request.id,
        request_id=request.id,
        job_id=request.job_id,
        loader_run_id=request.run_id,
        table_name=request.table,
        schema_version=request.schema_version,
        dt=request.dt,
        hour=request.hour,
        engine=request.engine,
        source_bucket=request.source_bucket,
        source_prefix=request.source_prefix,
    )
    session.add(run)
    await session.commit()
    return run, True


async def get_run(*, session: AsyncSession, run_id: str) -> TransformRun:
    """Return one run or raise NotFoundError."""
    run = await session.get(TransformRun, run_id)
    if run is None:
        raise NotFoundError(f"transform {run_id} not found")
    return run


async def list_runs(
    *, session: AsyncSession, table: str | None = None, state: str | None = None, limit: int = 100
) -> list[TransformRun]:
    """Return runs, newest first."""
    query = select(TransformRun)
    if table:
        query = query.where(TransformRun.table_name == table)
    if state:
        query = query.where(TransformRun.state == state)
    query = query.order_by(col(TransformRun.created_at).desc()).limit(limit)
    return list((await session.exec(query)).all())


async def save_run(sessions: async_sessionmaker[AsyncSession], run: TransformRun, **changes: Any) -> TransformRun:
    """Apply changes to a run in its own session and return the stored row."""
    async with sessions() as session:
        row = await session.get(TransformRun, run.id)
        if row is None:
            raise NotFoundError(f"transform {run.id} not found")
        for name, value in changes.items():
            setattr(row, name, value)
        session.add(row)
        await session.commit()
        await session.refresh(row)
        return row


async def unfinished_run_ids(*, session: AsyncSession, limit: int = 1000) -> list[str]:
    """Return runs that are queued or running (oldest first), to re-enqueue when a worker starts."""
    query = (
        select(TransformRun.id)
        .where(col(TransformRun.state).in_(("queued", "running")))
        .order_by(col(TransformRun.created_at))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


async def requeue_unfinished_runs(
    *, sessions: async_sessionmaker[AsyncSession], arq: Any, settings: HeadwaterSettings
) -> int:
    """Enqueue again the runs whose job was lost (Redis flushed, worker killed); live jobs make this a no-op."""
    async with sessions() as session:
        run_ids = await unfinished_run_ids(session=session)
    for run_id in run_ids:
        await enqueue_run(arq, settings, run_id)
    return len(run_ids)
