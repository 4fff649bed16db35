"""Replay job service functions, called alike by routes and the worker."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from arq.connections import ArqRedis
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.replay.models import TERMINAL_STATES, PreviewRecord, ReplayCreate, ReplayJob, ReplayRead
from services.replay.progress import ProgressStore, progress_view
from services.replay.pump import preview
from services.replay.query import check_window_width
from services.replay.selection import precheck
from services.replay.settings import ReplaySettings
from shared.auth import Principal
from shared.aws import AwsClients
from shared.errors import ConflictError, ForbiddenError, NotFoundError, UnprocessableError
from shared.messages import utc_now

RUN_FUNCTION = "run_replay_job"


async def create_job(
    *, session: AsyncSession, arq: ArqRedis, settings: ReplaySettings, request: ReplayCreate, principal: Principal
) -> ReplayJob:
    """Store a replay job and enqueue it on the service's arq queue."""
    check_scope(principal, request)
    check_request(settings, request)
    job = ReplayJob(
        id=f"rpl_{uuid.uuid4().hex[:20]}",
        target_stream=target_stream(settings, request.target_stream),
        dry_run=request.dry_run,
        request_json=request.model_dump_json(),
        created_by=principal.key_id,
    )
    session.add(job)
    await session.commit()
    await session.refresh(job)
    await arq.enqueue_job(RUN_FUNCTION, job.id, _job_id=job.id, _queue_name=settings.arq_queue)
    return job


def target_stream(settings: ReplaySettings, requested: str | None) -> str:
    """Return the physical stream a job writes to: one of ``replay_target_streams`` (logical or physical name)."""
    allowed = {settings.stream(name): name for name in settings.replay_target_streams}
    if requested is None:
        return settings.stream(settings.default_target_stream)
    physical = requested if requested in allowed else settings.stream(requested)
    if physical not in allowed:
        names = ", ".join(sorted(settings.replay_target_streams))
        raise UnprocessableError(
            f"target_stream {requested!r} is not one replay may write to (allowed: {names})",
            details=[{"field": "target_stream", "reason": "not_allowed"}],
        )
    return physical


def check_request(settings: ReplaySettings, request: ReplayCreate) -> None:
    """Refuse a request before anything runs: SQL that is not one SELECT (400), a too wide window (422)."""
    precheck(request)
    if request.selection is not None:
        check_window_width(settings, request.selection.start, request.selection.end)


def check_scope(principal: Principal, request: ReplayCreate) -> None:
    """Refuse (403) the ad-hoc ``query`` form to a key without ``replay:query`` (its records are made up by SQL)."""
    if request.query is not None and not principal.allows("replay:query"):
        raise ForbiddenError("the query form of a replay needs the 'replay:query' scope; use a selection")


async def preview_job(
    *, settings: ReplaySettings, aws: AwsClients, principal: Principal, request: ReplayCreate, limit: int
) -> list[PreviewRecord]:
    """Check a request as ``create_job`` does, then return its first ``limit`` records as a job would emit them."""
    check_scope(principal, request)
    check_request(settings, request)
    return await preview(settings=settings, aws=aws, request=request, limit=limit)


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
