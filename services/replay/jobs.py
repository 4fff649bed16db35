"""Replay job service functions, called alike by routes and the worker."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from arq.connections import ArqRedis
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.replay.models import TERMINAL_STATES, ReplayCreate, ReplayJob, ReplayRead
from services.replay.progress import ProgressStore, progress_view
from services.replay.selection import precheck
from services.replay.settings import ReplaySettings
from shared.errors import ConflictError, NotFoundError
from shared.messages import utc_now

RUN_FUNCTION = "run_replay_job"


async def create_job(
    *, session: AsyncSession, arq: ArqRedis, settings: ReplaySettings, request: ReplayCreate, created_by: str
) -> ReplayJob:
    """Store a replay job and enqueue it on the service's arq queue."""
    precheck(request)
    job = ReplayJob(
        id=f"rpl_{uuid.uuid4().hex[:20]}",
        target_stream=request.target_stream or settings.stream(settings.default_target_stream),
        dry_run=request.dry_run,
        request_json=request.model_dump_json(),
        created_by=created_by,
    )
    session.add(job)
    await session.commit()
    await session.refresh(job)
    await arq.enqueue_job(RUN_FUNCTION, job.id, _job_id=job.id, _queue_name=settings.arq_queue)
    return job


async def to_read(job: ReplayJob, store: ProgressStore) -> ReplayRead:
    """Shape a job for the API, with live progress from Redis when there is any."""
    counters = await store.read(job.id)
    fallback: dict[str, int | None] = {
        "total": job.total,
        "read": job.read,
        "emitted": job.emitted,
        "failed": job.failed,
    }
    summary: dict[str, Any] | None = orjson.loads(job.summary_json) if job.summary_json else None
    return ReplayRead(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        target_stream=job.target_stream,
        dry_run=job.dry_run,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        request=orjson.loads(job.request_json),
        progress=progress_view(counters, fallback=fallback),
        summary=summary,
        error=job.error,
    )


async def get_job(*, session: AsyncSession, job_id: str) -> ReplayJob:
    """Return a job or raise NotFoundError."""
    job = await session.get(ReplayJob, job_id)
    if job is None:
        raise NotFoundError(f"replay job {job_id} not found", details=[{"field": "id", "reason": "unknown"}])
    return job


async def list_jobs(*, session: AsyncSession, limit: int = 200) -> list[ReplayJob]:
    """Return the newest jobs first."""
    rows = await session.exec(select(ReplayJob).order_by(col(ReplayJob.created_at).desc()).limit(limit))
    return list(rows.all())


async def cancel_job(*, session: AsyncSession, store: ProgressStore, job_id: str) -> ReplayJob:
    """Ask a job to stop; a queued job is cancelled at once, a running one before its next batch."""
    job = await get_job(session=session, job_id=job_id)
    if job.state in TERMINAL_STATES:
        raise ConflictError(f"replay job {job_id} is already {job.state}")
    await store.request_cancel(job_id)
    if job.state == "queued":
        job.state = "cancelled"
        job.finished_at = utc_now()
        session.add(job)
        await session.commit()
        await session.refresh(job)
    return job


async def recover_orphans(
    *, session: AsyncSession, store: ProgressStore, arq: ArqRedis, settings: ReplaySettings
) -> list[str]:
    """Re-enqueue running jobs whose runner died (their lease lapsed); they resume from their checkpoint."""
    rows = await session.exec(select(ReplayJob).where(ReplayJob.state == "running"))
    recovered = []
    for job in rows.all():
        if await store.lease_held(job.id):
            continue
        await arq.enqueue_job(
            RUN_FUNCTION, job.id, _job_id=f"{job.id}:resume:{uuid.uuid4().hex[:8]}", _queue_name=settings.arq_queue
        )
        recovered.append(job.id)
    return recovered
