"""Loader HTTP routes: jobs and their runs, warehouse counts, the traffic API."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel.ext.asyncio.session import AsyncSession

from services.loader import jobs as job_service
from services.loader import runs as run_service
from services.loader import scanner
from services.loader.models import (
    TABLE_NAME,
    DeleteResult,
    JobAction,
    JobCreate,
    JobRead,
    JobUpdate,
    RunEventRead,
    RunRead,
    TrafficSeries,
    WarehouseCount,
)
from services.loader.runtime import Runtime
from services.loader.traffic import traffic_series
from services.loader.warehouse import open_adapter
from shared.auth import Principal, require_scope
from shared.deps import AwsDep, SessionDep, SettingsDep
from shared.errors import UnprocessableError
from shared.http import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)
Admin = Annotated[Principal, Depends(require_scope("jobs:admin"))]
Reader = Annotated[Principal, Depends(require_scope("read"))]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _read(session: AsyncSession, job_id: int) -> JobRead:
    job = await job_service.get_job(session=session, job_id=job_id)
    return JobRead.of(job, await run_service.state_counts(session, job_id))


@router.post("/v1/jobs", tags=["jobs"], summary="Create a load job", status_code=201, response_model=JobRead)
async def create_job(
    job_in: JobCreate, session: SessionDep, settings: SettingsDep, aws: AwsDep, rt: RuntimeDep, _: Admin
) -> JobRead:
    """Create a job: watch the source from the start date and keep the warehouse table loaded."""
    job = await job_service.create_job(session=session, settings=settings, aws=aws, job_in=job_in)
    # The worker scans the new job at once rather than at the next cron tick.
    await rt.arq.enqueue_job("scan_one", job.id)
    return await _read(session, job.id or 0)


@router.get("/v1/jobs", tags=["jobs"], summary="List load jobs", response_model=list[JobRead])
async def list_jobs(session: SessionDep, _: Reader) -> list[JobRead]:
    """List every job with its per-state date counts."""
    return [JobRead.of(job, counts) for job, counts in await job_service.list_jobs(session=session)]


@router.get("/v1/jobs/{job_id}", tags=["jobs"], summary="Get a load job", response_model=JobRead)
async def get_job(job_id: int, session: SessionDep, _: Reader) -> JobRead:
    """Return one job."""
    return await _read(session, job_id)


@router.patch("/v1/jobs/{job_id}", tags=["jobs"], summary="Update a load job", response_model=JobRead)
async def update_job(
    job_id: int, job_in: JobUpdate, session: SessionDep, settings: SettingsDep, aws: AwsDep, _: Admin
) -> JobRead:
    """Move the job to a newer schema version (columns are added, never dropped) or change end, mails, retention."""
    await job_service.update_job(session=session, settings=settings, aws=aws, job_id=job_id, job_in=job_in)
    return await _read(session, job_id)


@router.post(
    "/v1/jobs/{job_id}/{action}", tags=["jobs"], summary="Pause, resume or cancel a job", response_model=JobAction
)
async def job_action(
    job_id: int, action: Literal["pause", "resume", "cancel"], session: SessionDep, rt: RuntimeDep, _: Admin
) -> JobAction:
    """Pause (no new dates start), resume, or cancel (stops after the step in flight)."""
    await job_service.apply_action(session=session, job_id=job_id, action=action)
    if action == "resume":
        await scanner.dispatch_job(rt, job_id)
        await rt.arq.enqueue_job("scan_one", job_id)  # days that arrived while paused
    return JobAction(job=await _read(session, job_id), action=action)


@router.delete("/v1/jobs/{job_id}", tags=["jobs"], summary="Delete a job", response_model=DeleteResult)
async def delete_job(
    job_id: int,
    session: SessionDep,
    settings: SettingsDep,
    aws: AwsDep,
    _: Admin,
    drop_data: Annotated[bool, Query(description="also delete the loaded dates from the warehouse")] = False,
) -> DeleteResult:
    """Delete a job and its runs; optionally drop its loaded data."""
    dropped = await job_service.delete_job(
        session=session, settings=settings, aws=aws, job_id=job_id, drop_data=drop_data
    )
    return DeleteResult(job_id=job_id, deleted=True, dates_dropped=dropped)


@router.get("/v1/jobs/{job_id}/runs", tags=["runs"], summary="Per-date runs of a job", response_model=list[RunRead])
async def list_runs(job_id: int, session: SessionDep, _: Reader) -> list[RunRead]:
    """Return each date's state, attempts, error, row counts and timings, in date order."""
    await job_service.get_job(session=session, job_id=job_id)
    return [RunRead.of(run) for run in await run_service.runs_of(session, job_id)]


@router.post("/v1/jobs/{job_id}/runs/{dt}/retry", tags=["runs"], summary="Retry a failed date", response_model=RunRead)
async def retry_run(job_id: int, dt: date, session: SessionDep, rt: RuntimeDep, _: Admin) -> RunRead:
    """Send a failed date back to the queue with fresh attempts."""
    run = await job_service.retry_date(session=session, job_id=job_id, dt=dt)
    await scanner.dispatch_job(rt, job_id)
    await session.refresh(run)
    return RunRead.of(run)


@router.get(
    "/v1/jobs/{job_id}/history", tags=["runs"], summary="Runs history of a job", response_model=list[RunEventRead]
)
async def job_history(job_id: int, session: SessionDep, _: Reader) -> list[RunEventRead]:
    """Return every state change, failure and deletion of the job's dates."""
    events = await job_service.history(session=session, job_id=job_id)
    return [RunEventRead.model_validate(event, from_attributes=True) for event in events]


@router.get(
    "/v1/warehouse/{table}/count", tags=["warehouse"], summary="Count warehouse rows", response_model=WarehouseCount
)
async def warehouse_count(
    table: str,
    settings: SettingsDep,
    aws: AwsDep,
    _: Reader,
    dt: date | None = None,
    warehouse: Literal["duckdb", "postgres"] = "duckdb",
    column: str = "dt",
) -> WarehouseCount:
    """Count a table's rows (of one date with ``dt``)."""
    if not TABLE_NAME.match(table) or not TABLE_NAME.match(column):
        raise UnprocessableError("invalid table or column name", details=[{"field": "table", "reason": "bad name"}])
    rows = await open_adapter(warehouse, settings, aws).count(table, dt, column)
    return WarehouseCount(table=table, warehouse=warehouse, dt=dt, rows=rows)


@router.get(
    "/advertising/traffic/{ad_id}",
    tags=["traffic"],
    summary="Per-day traffic of an ad (needs read)",
    response_model=TrafficSeries,
)
async def ad_traffic(
    ad_id: str,
    settings: SettingsDep,
    aws: AwsDep,
    _: Reader,
    start: Annotated[date, Query(description="first day, YYYY-MM-DD")],
    end: Annotated[date, Query(description="last day, YYYY-MM-DD")],
) -> TrafficSeries:
    """Return impressions, clicks and CTR per day and in total (an unknown ad gives an empty series)."""
    if end < start:
        raise UnprocessableError("end is before start", details=[{"field": "end", "reason": "end is before start"}])
    if (end - start).days > 3660:
        raise UnprocessableError("range too long", details=[{"field": "end", "reason": "at most 10 years"}])
    return await traffic_series(await aws.get("dynamodb"), settings, ad_id, start, end)
