"""HTTP routes of the replay service: archive SQL and replay jobs.

Each handler parses, authorises, calls a service function and shapes the answer; the service functions raise the
domain errors of ``shared.errors`` (``QueryRefused`` is a 400), which the app maps to HTTP statuses.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.convertors import Convertor, register_url_convertor

from services.replay import jobs as job_service
from services.replay.deps import ArqDep, AwsDep, ProgressDep, QuerySlotsDep, SessionDep, SettingsDep
from services.replay.models import PreviewRead, PreviewRequest, QueryRequest, ReplayCreate, ReplayList, ReplayRead
from services.replay.query import MEDIA_TYPES, TRUNCATED_HEADER, start_query
from shared.auth import ReadScope, ReplayRunScope
from shared.deps import RedisDep
from shared.openapi import error_responses, rule_responses

router = APIRouter(prefix="/v1")


class _ReplayIdConvertor(Convertor[str]):
    """A job id segment: anything but ``preview``, so ``/replays/preview`` is not also a job's path (``Allow``)."""

    regex = "(?!preview$)[^/]+"

    def convert(self, value: str) -> str:
        """Return the segment as is."""
        return value

    def to_string(self, value: str) -> str:
        """Return the id as its path segment."""
        return value


register_url_convertor("replay_id", _ReplayIdConvertor())

# What the schema cannot state, answered to requests that match it (see shared.openapi.rule_responses).
_WINDOW_RULE = "`end` after `start`, at most the server's `query_max_window_days` later"
_SQL_RULES = (
    "the SQL is a single read-only SELECT over the documented views, and runs",
    "the query yields its first row within `timeout_s` (and the server's cap)",
)
_REPLAY_RESPONSES = {
    **rule_responses(400, "a `query` is a single read-only SELECT that runs under the query limits"),
    **rule_responses(
        422, _WINDOW_RULE, "`target_stream` is one of the server's `replay_target_streams` (replay's own by default)"
    ),
}

_JSONL_EXAMPLE = (
    '{"type":"click","n":2}\n{"type":"impression","n":5}\n{"_truncated":true,"reason":"max_rows","rows":2}\n'
)


@router.post(
    "/query",
    tags=["query"],
    summary="Run a read-only SQL SELECT over the archive and the live tail",
    description=(
        "Views: `raw_events`, `live_events`, `all_events` (de-duplicated by event id, archive wins) and one view "
        "per curated table. Anything but a single SELECT, and a query that fails or runs out of time before its "
        "first row, is refused with 400. Rows stream back as JSON lines (`application/x-ndjson`) or an Arrow IPC "
        "stream (`format: arrow`).\n\n"
        "**Limits.** Each query has its own DuckDB memory and spill limits; `timeout_s` (capped by the server) "
        "counts from the request, archive listing included; `start`..`end` may span at most the server's "
        "`query_max_window_days` (422 beyond); a process runs a few queries at once and answers 429 with "
        "`Retry-After` when full; a client that disconnects stops its query.\n\n"
        "**Truncation is said.** A result cut by `max_rows`, the response byte cap, the time limit or an error "
        'while streaming ends with a last JSON line `{"_truncated": true, "reason": "max_rows|max_bytes|timeout|'
        'error", "rows": N}`, or, in Arrow, with an empty record batch whose custom metadata holds `truncated` '
        f"(the reason) and `rows`. When known before the first byte, the `{TRUNCATED_HEADER}` header says it too."
    ),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the rows (last line the truncation marker when the result was cut)",
            "headers": {
                TRUNCATED_HEADER: {
                    "description": "the reason, when the result is cut before its first byte is sent",
                    "schema": {"type": "string", "enum": ["max_rows", "max_bytes", "timeout", "error"]},
                }
            },
            "content": {MEDIA_TYPES["jsonl"]: {"example": _JSONL_EXAMPLE}, MEDIA_TYPES["arrow"]: {}},
        },
        **error_responses(429),
        **rule_responses(400, *_SQL_RULES),
        **rule_responses(422, _WINDOW_RULE),
    },
)
async def run_query(
    body: QueryRequest,
    _: ReadScope,
    request: Request,
    settings: SettingsDep,
    aws: AwsDep,
    slots: QuerySlotsDep,
    redis: RedisDep,
) -> StreamingResponse:
    """Check the SQL, then stream its rows."""
    gone = request.is_disconnected
    rows = await start_query(settings=settings, aws=aws, request=body, slots=slots, gone=gone, redis=redis)
    return StreamingResponse(rows.chunks(), media_type=rows.media_type, headers=rows.headers)


@router.post(
    "/replays",
    tags=["replays"],
    summary="Create a replay job",
    description=(
        "A job replays a `selection` (scope `replay:run`) or an ad-hoc `query`, whose records are made up by SQL "
        "(scopes `replay:run` and `replay:query`; 403 without). `target_stream` must be one of the server's "
        "`replay_target_streams` (replay's own stream by default; 422 otherwise); records bound for ingest's "
        "`events` stream must be valid raw records (contract 1, ingest's event-id pattern) or are counted failed "
        "(`InvalidRecord`). A selection's `start`..`end` spans at most `query_max_window_days` (422). A job's "
        "selection has the query limits (memory, spill, `job_selection_timeout_s`) and at most `job_max_rows` "
        "rows, else the job fails; cancel takes effect within a second in every phase; the job's scratch files "
        "are removed when it ends."
    ),
    status_code=202,
    response_model=ReplayRead,
    responses=_REPLAY_RESPONSES,
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
    job = await job_service.create_job(session=session, arq=arq, settings=settings, request=body, principal=principal)
    return await job_service.to_read(job, progress)


@router.post(
    "/replays/preview",
    tags=["replays"],
    summary="Preview the first N records a replay would emit",
    description="Checked as a job is (the `query` form needs `replay:query` too); runs under the query limits.",
    response_model=PreviewRead,
    responses=_REPLAY_RESPONSES,
)
async def preview_replay(
    body: PreviewRequest, principal: ReplayRunScope, settings: SettingsDep, aws: AwsDep
) -> PreviewRead:
    """Return the head of the selection exactly as a job would put it on the stream."""
    records = await job_service.preview_job(
        settings=settings, aws=aws, principal=principal, request=body.replay(), limit=body.limit
    )
    return PreviewRead(records=records, count=len(records))


@router.get("/replays", tags=["replays"], summary="List replay jobs, newest first", response_model=ReplayList)
async def list_replays(_: ReadScope, session: SessionDep, progress: ProgressDep) -> ReplayList:
    """List the newest jobs with their progress."""
    jobs = await job_service.list_jobs(session=session)
    return ReplayList(jobs=[await job_service.to_read(job, progress) for job in jobs])


@router.get(
    "/replays/{replay_id:replay_id}",
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
    "/replays/{replay_id:replay_id}/cancel",
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
