"""Loader HTTP routes: jobs and their runs, warehouse counts, the traffic API.

Each handler parses, authorises, calls a service function and shapes the answer; the service functions raise
the domain errors of ``shared.errors``, which the app maps to HTTP statuses.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.loader import jobs as job_service
from services.loader import runs as run_service
from services.loader import scanner
from services.loader.deps import AwsDep, SessionDep, SettingsDep, WiringDep
from services.loader.models import (
    ID_MAX,
    TABLE_NAME,
    DeleteResult,
    IsoDate,
    JobAction,
    JobCreate,
    JobRead,
    JobUpdate,
    RunEventRead,
    RunRead,
    TrafficSeries,
    WarehouseCount,
)
from services.loader.traffic import MAX_RANGE_DAYS
from services.loader.traffic import get_traffic as traffic_of
from services.loader.warehouse import count_rows
from shared.auth import JobsAdminScope, ReadScope
from shared.openapi import error_responses, rule_responses

router = APIRouter()

JobId = Annotated[int, Path(ge=1, le=ID_MAX, description="the job's id")]


@router.post(
    "/v1/jobs",
    tags=["jobs"],
    summary="Create a load job",
    description="A schema version not registered (with transform) is a 404 naming `schema_version`.",
    status_code=201,
    response_model=JobRead,
    responses={
        **error_responses(404),
        **rule_responses(
            422,
            "`end_date` on or after `start_date`",
            "`source` is a date template (s3://bucket/prefix/YYYY/MM/DD/ or s3://bucket/prefix/dt=YYYY-MM-DD/)",
            "`redshift` only with warehouse `redshift`",
        ),
    },
)
async def create_job(
    job_in: JobCreate, session: SessionDep, settings: SettingsDep, aws: AwsDep, wiring: WiringDep, _: JobsAdminScope
) -> JobRead:
    """Create a job: watch the source from the start date and keep the warehouse table loaded."""
    job = await job_service.create_job(session=session, settings=settings, aws=aws, job_in=job_in)
    await scanner.request_scan(wiring, job.id or 0)  # data already there loads now, not at the next cron tick
    return await job_service.read_job(session=session, job_id=job.id or 0)


@router.get("/v1/jobs", tags=["jobs"], summary="List load jobs", response_model=list[JobRead])
async def list_jobs(session: SessionDep, _: ReadScope) -> list[JobRead]:
    """List every job with its per-state date counts."""
    return [JobRead.of(job, counts) for job, counts in await job_service.list_jobs(session=session)]


@router.get(
    "/v1/jobs/{job_id}", tags=["jobs"], summary="Get a load job", response_model=JobRead, responses=error_responses(404)
)
async def get_job(job_id: JobId, session: SessionDep, _: ReadScope) -> JobRead:
    """Return one job."""
    return await job_service.read_job(session=session, job_id=job_id)


@router.patch(
    "/v1/jobs/{job_id}",
    tags=["jobs"],
    summary="Update a load job",
    response_model=JobRead,
    responses={
        **error_responses(404),
        **rule_responses(
            422, "`end_date` on or after the job's `start_date`", "a new `schema_version` only adds columns"
        ),
    },
)
async def update_job(
    job_id: JobId, job_in: JobUpdate, session: SessionDep, settings: SettingsDep, aws: AwsDep, _: JobsAdminScope
) -> JobRead:
    """Move the job to a newer schema version (columns are added, never dropped) or change end, mails, retention."""
    await job_service.update_job(session=session, settings=settings, aws=aws, job_id=job_id, job_in=job_in)
    return await job_service.read_job(session=session, job_id=job_id)


@router.post(
    "/v1/jobs/{job_id}/pause",
    tags=["jobs"],
    summary="Pause a job",
    response_model=JobAction,
    responses=error_responses(404, 409),
)
async def pause_job(job_id: JobId, session: SessionDep, _: JobsAdminScope) -> JobAction:
    """Pause an active job: no new dates start (the step in flight finishes); arriving days wait."""
    await job_service.apply_action(session=session, job_id=job_id, action="pause")
    return JobAction(job=await job_service.read_job(session=session, job_id=job_id), action="pause")


@router.post(
    "/v1/jobs/{job_id}/resume",
    tags=["jobs"],
    summary="Resume a paused job",
    response_model=JobAction,
    responses=error_responses(404, 409),
)
async def resume_job(job_id: JobId, session: SessionDep, wiring: WiringDep, _: JobsAdminScope) -> JobAction:
    """Resume a paused job: its waiting dates start again and the days that arrived meanwhile are scanned."""
    await job_service.apply_action(session=session, job_id=job_id, action="resume")
    await scanner.dispatch_job(wiring, job_id)
    await scanner.request_scan(wiring, job_id)
    return JobAction(job=await job_service.read_job(session=session, job_id=job_id), action="resume")


@router.post(
    "/v1/jobs/{job_id}/cancel",
    tags=["jobs"],
    summary="Cancel a job",
    response_model=JobAction,
    responses=error_responses(404, 409),
)
async def cancel_job(job_id: JobId, session: SessionDep, _: JobsAdminScope) -> JobAction:
    """Cancel an active or paused job: waiting dates are cancelled, the step in flight finishes unloaded."""
    await job_service.apply_action(session=session, job_id=job_id, action="cancel")
    return JobAction(job=await job_service.read_job(session=session, job_id=job_id), action="cancel")


@router.delete(
    "/v1/jobs/{job_id}",
    tags=["jobs"],
    summary="Delete a job",
    response_model=DeleteResult,
    responses=error_responses(404, 409),
)
async def delete_job(
    job_id: JobId,
    session: SessionDep,
    settings: SettingsDep,
    aws: AwsDep,
    _: JobsAdminScope,
    drop_data: Annotated[bool, Query(description="also delete the loaded dates from the warehouse")] = False,
) -> DeleteResult:
    """Delete a job and its runs (not while dates are in flight on an active job); optionally drop its data.

    ``drop_data`` deletes the job's loaded dates from its table; when another job loads any of those dates into
    the same table the answer is 409 naming those jobs, and nothing is deleted.
    """
    dropped = await job_service.delete_job(
        session=session, settings=settings, aws=aws, job_id=job_id, drop_data=drop_data
    )
    return DeleteResult(job_id=job_id, deleted=True, dates_dropped=dropped)


@router.get(
    "/v1/jobs/{job_id}/runs",
    tags=["runs"],
    summary="List the per-date runs of a job",
    response_model=list[RunRead],
    responses=error_responses(404),
)
async def list_job_runs(job_id: JobId, session: SessionDep, _: ReadScope) -> list[RunRead]:
    """Return each date's state, attempts, error, row counts and timings, in date order."""
    await job_service.get_job(session=session, job_id=job_id)
    return [RunRead.of(run) for run in await run_service.runs_of(session, job_id)]


@router.post(
    "/v1/jobs/{job_id}/runs/{dt}/retry",
    tags=["runs"],
    summary="Retry a failed date",
    response_model=RunRead,
    responses=error_responses(404, 409),
)
async def retry_job_run(
    job_id: JobId, dt: IsoDate, session: SessionDep, wiring: WiringDep, _: JobsAdminScope
) -> RunRead:
    """Send a failed (or cancelled) date back to the queue with fresh attempts."""
    run = await job_service.retry_date(session=session, job_id=job_id, dt=dt)
    await scanner.dispatch_job(wiring, job_id)
    await session.refresh(run)
    return RunRead.of(run)


@router.get(
    "/v1/jobs/{job_id}/history",
    tags=["runs"],
    summary="List the runs history of a job",
    response_model=list[RunEventRead],
    responses=error_responses(404),
)
async def list_job_history(job_id: JobId, session: SessionDep, _: ReadScope) -> list[RunEventRead]:
    """Return every state change, failure and deletion of the job's dates."""
    events = await job_service.history(session=session, job_id=job_id)
    return [RunEventRead.model_validate(event, from_attributes=True) for event in events]


@router.get(
    "/v1/warehouse/{table}/count", tags=["warehouse"], summary="Count warehouse rows", response_model=WarehouseCount
)
async def get_warehouse_count(
    table: Annotated[str, Path(pattern=TABLE_NAME.pattern, description="lower-case letters, digits and _")],
    settings: SettingsDep,
    aws: AwsDep,
    _: ReadScope,
    dt: Annotated[IsoDate | None, Query(description="count only this date's rows")] = None,
    warehouse: Literal["duckdb", "postgres"] = "duckdb",
    column: Annotated[str, Query(pattern=TABLE_NAME.pattern, description="the date column `dt` filters on")] = "dt",
) -> WarehouseCount:
    """Count a table's rows (of one date with ``dt``); a table not created yet counts 0."""
    rows = await count_rows(settings=settings, aws=aws, warehouse=warehouse, table=table, dt=dt, column=column)
    return WarehouseCount(table=table, warehouse=warehouse, dt=dt, rows=rows)


@router.get(
    "/v1/advertising/traffic/{ad_id}",
    tags=["traffic"],
    summary="Get the per-day traffic of an ad",
    description="Impressions, clicks and CTR per day from `start` to `end` (both included; `end` on or after "
    "`start`, at most 3660 days later, else 422). An unknown ad gives an empty series. The seed's path "
    "`/advertising/traffic/{ad_id}` is an alias kept for existing clients.",
    response_model=TrafficSeries,
    responses=rule_responses(422, f"`end` on or after `start`, at most {MAX_RANGE_DAYS} days later"),
)
# The seed's path, kept for existing clients; the spec shows only the /v1 path (the description says so).
@router.get("/advertising/traffic/{ad_id}", tags=["traffic"], response_model=TrafficSeries, include_in_schema=False)
async def get_traffic(
    ad_id: str,
    settings: SettingsDep,
    aws: AwsDep,
    _: ReadScope,
    start: Annotated[IsoDate, Query(description="first day, YYYY-MM-DD")],
    end: Annotated[IsoDate, Query(description="last day, YYYY-MM-DD")],
) -> TrafficSeries:
    """Return impressions, clicks and CTR per day and in total (an unknown ad gives an empty series)."""
    return await traffic_of(aws=aws, settings=settings, ad_id=ad_id, start=start, end=end)
