"""HTTP routes of the replay service: archive SQL and replay jobs.

Each handler parses, authorises, calls a service function and shapes the answer; the service functions raise the
domain errors of ``shared.errors`` (``QueryRefused`` is a 400), which the app maps to HTTP statuses.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.replay import jobs as job_service
from services.replay.deps import ArqDep, AwsDep, ProgressDep, SessionDep, SettingsDep
from services.replay.models import PreviewRead, PreviewRequest, QueryRequest, ReplayCreate, ReplayList, ReplayRead
from services.replay.pump import preview
from services.replay.query import MEDIA_TYPES, start_query
from shared.auth import ReadScope, ReplayRunScope
from shared.openapi import error_responses

router = APIRouter(prefix="/v1")

_JSONL_EXAMPLE = '{"type":"click","n":2}\n{"type":"impression","n":5}\n'


@router.post(
    "/query",
    tags=["query"],
    summary="Run a read-only SQL SELECT over the archive and the live tail",
    description=(
        "Views: `raw_events`, `live_events`, `all_events` (de-duplicated by event id, archive wins) and one view "
        "per curated table. Anything but a single SELECT, and a query over its time limit, is refused with 400. "
        "Rows stream back as JSON lines (`application/x-ndjson`) or an Arrow IPC stream (`format: arrow`)."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the rows",
            "content": {MEDIA_TYPES["jsonl"]: {"example": _JSONL_EXAMPLE}, MEDIA_TYPES["arrow"]: {}},
        },
        **error_responses(400),
    },
)
async def run_query(body: QueryRequest, _: ReadScope, settings: SettingsDep, aws: AwsDep) -> StreamingResponse:
    """Check the SQL, then stream its rows."""
    rows = await start_query(settings=settings, aws=aws, request=body)
    return StreamingResponse(rows.chunks(), media_type=rows.media_type)


@router.post(
    "/replays",
    tags=["replays"],
    summary="Create a replay job",
    status_code=202,
    response_model=ReplayRead,
    responses=error_responses(400),
)
async def create_replay(
    body: ReplayCreate,
    principal: ReplayRunScope,
    session: SessionDep,
    settings: SettingsDep,
    arq: ArqDep,
    progress: ProgressDep,
) -> ReplayRead:
    """Check the request's SQL, store the job and queue it."""
    job = await job_service.create_job(
        session=session, arq=arq, settings=settings, request=body, created_by=principal.key_id
    )
    return await job_service.to_read(job, progress)


@router.post(
    "/replays/preview",
    tags=["replays"],
    summary="Preview the first N records a replay would emit",
    response_model=PreviewRead,
    responses=error_responses(400),
)
async def preview_replay(body: PreviewRequest, _: ReplayRunScope, settings: SettingsDep, aws: AwsDep) -> PreviewRead:
    """Return the head of the selection exactly as a job would put it on the stream."""
    records = await preview(settings=settings, aws=aws, request=body.replay(), limit=body.limit)
    return PreviewRead(records=records, count=len(records))


@router.get("/replays", tags=["replays"], summary="List replay jobs, newest first", response_model=ReplayList)
async def list_replays(_: ReadScope, session: SessionDep, progress: ProgressDep) -> ReplayList:
    """List the newest jobs with their progress."""
    jobs = await job_service.list_jobs(session=session)
    return ReplayList(jobs=[await job_service.to_read(job, progress) for job in jobs])


@router.get(
    "/replays/{replay_id}",
    tags=["replays"],
    summary="Show a replay job and its progress",
    response_model=ReplayRead,
    responses=error_responses(404),
)
async def get_replay(replay_id: str, _: ReadScope, session: SessionDep, progress: ProgressDep) -> ReplayRead:
    """Return one job with its live progress."""
    job = await job_service.get_job(session=session, job_id=replay_id)
    return await job_service.to_read(job, progress)


@router.post(
    "/replays/{replay_id}/cancel",
    tags=["replays"],
    summary="Cancel a replay job",
    status_code=202,
    response_model=ReplayRead,
    responses=error_responses(404, 409),
)
async def cancel_replay(replay_id: str, _: ReplayRunScope, session: SessionDep, progress: ProgressDep) -> ReplayRead:
    """Stop a queued job now, a running one before its next batch; 409 when it already finished."""
    job = await job_service.cancel_job(session=session, store=progress, job_id=replay_id)
    return await job_service.to_read(job, progress)
