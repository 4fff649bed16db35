"""HTTP routes of the replay service: archive SQL and replay jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.replay import jobs as job_service
from services.replay.models import (
    PreviewRead,
    PreviewRecord,
    PreviewRequest,
    QueryRequest,
    ReplayCreate,
    ReplayList,
    ReplayRead,
)
from services.replay.progress import ProgressStore
from services.replay.pump import preview as preview_records
from services.replay.query import start_query
from shared.auth import Principal, require_scope
from shared.deps import AwsDep, SessionDep, SettingsDep
from shared.http import ERROR_RESPONSES

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)

ReplayRunner = Annotated[Principal, Depends(require_scope("replay:run"))]
Reader = Annotated[Principal, Depends(require_scope("read"))]


def get_store(request: Request) -> ProgressStore:
    """Return the app's progress store."""
    return request.app.state.progress


StoreDep = Annotated[ProgressStore, Depends(get_store)]

_JSONL_EXAMPLE = '{"type":"click","n":2}\n{"type":"impression","n":5}\n'


@router.post(
    "/query",
    tags=["query"],
    summary="Run a read-only SQL SELECT over the archive and the live tail",
    description=(
        "Views: `raw_events`, `live_events`, `all_events` (de-duplicated by event id, archive wins) and one view "
        "per curated table. Anything but a single SELECT is refused with 400. Rows stream back as JSON lines "
        "(`application/x-ndjson`) or an Arrow IPC stream (`format: arrow`)."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the rows",
            "content": {
                "application/x-ndjson": {"example": _JSONL_EXAMPLE},
                "application/vnd.apache.arrow.stream": {},
            },
        }
    },
)
async def run_query(body: QueryRequest, _: Reader, settings: SettingsDep, aws: AwsDep) -> StreamingResponse:
    stream, schema = await start_query(settings=settings, aws=aws, request=body)
    if body.format == "arrow":
        return StreamingResponse(stream.arrow(schema), media_type="application/vnd.apache.arrow.stream")
    return StreamingResponse(stream.jsonl(), media_type="application/x-ndjson")


@router.post("/replays", tags=["replays"], summary="Create a replay job", status_code=202, response_model=ReplayRead)
async def create_replay(
    body: ReplayCreate,
    principal: ReplayRunner,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
) -> ReplayRead:
    job = await job_service.create_job(
        session=session, arq=request.app.state.arq, settings=settings, request=body, created_by=principal.key_id
    )
    return await job_service.to_read(job, store)


@router.post(
    "/replays/preview",
    tags=["replays"],
    summary="Preview the first N records a replay would emit",
    response_model=PreviewRead,
)
async def preview_replay(body: PreviewRequest, _: ReplayRunner, settings: SettingsDep, aws: AwsDep) -> PreviewRead:
    options = ReplayCreate.model_validate(body.model_dump(exclude={"limit"}))
    records = await preview_records(settings=settings, aws=aws, request=options, limit=body.limit)
    return PreviewRead(records=[PreviewRecord(**r) for r in records], count=len(records))


@router.get("/replays", tags=["replays"], summary="List replay jobs, newest first", response_model=ReplayList)
async def list_replays(_: Reader, session: SessionDep, store: StoreDep) -> ReplayList:
    jobs = await job_service.list_jobs(session=session)
    return ReplayList(jobs=[await job_service.to_read(job, store) for job in jobs])


@router.get(
    "/replays/{replay_id}", tags=["replays"], summary="Show a replay job and its progress", response_model=ReplayRead
)
async def get_replay(replay_id: str, _: Reader, session: SessionDep, store: StoreDep) -> ReplayRead:
    job = await job_service.get_job(session=session, job_id=replay_id)
    return await job_service.to_read(job, store)


@router.post(
    "/replays/{replay_id}/cancel",
    tags=["replays"],
    summary="Cancel a replay job",
    status_code=202,
    response_model=ReplayRead,
)
async def cancel_replay(replay_id: str, _: ReplayRunner, session: SessionDep, store: StoreDep) -> ReplayRead:
    job = await job_service.cancel_job(session=session, store=store, job_id=replay_id)
    return await job_service.to_read(job, store)
