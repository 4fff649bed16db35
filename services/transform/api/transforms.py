"""HTTP routes of transform runs: start them, list them, read one and its engine logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from services.transform import run_store
from services.transform.deps import ArqDep, AwsDep, SessionDep, SettingsDep
from services.transform.models import MAX_RANGE_DAYS, TransformCreate, TransformList, TransformLogs, TransformRead
from services.transform.spark.backends import fetch_logs
from shared.auth import JobsAdminScope, ReadScope
from shared.openapi import error_responses, rule_responses

router = APIRouter(tags=["transforms"])


@router.post(
    "/v1/transforms",
    summary="Start transform runs",
    description="Start one run per date (`dt`, or `start` to `end`). 404 when the schema version is not registered.",
    response_model=TransformList,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **error_responses(404),
        **rule_responses(422, f"`end` on or after `start`, at most {MAX_RANGE_DAYS} days later"),
    },
)
async def create_transform(
    body: TransformCreate, session: SessionDep, arq: ArqDep, settings: SettingsDep, _principal: JobsAdminScope
) -> TransformList:
    """Create and enqueue the runs of a transform request."""
    created = await run_store.create_runs(session=session, arq=arq, settings=settings, request=body)
    return TransformList(items=[run_store.to_read(run, settings) for run in created])


@router.get("/v1/transforms", summary="List transform runs", response_model=TransformList)
async def list_transforms(
    session: SessionDep,
    settings: SettingsDep,
    _principal: ReadScope,
    table: Annotated[str | None, Query(description="only this table")] = None,
    state: Annotated[str | None, Query(description="queued, running, succeeded or failed")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TransformList:
    """List transform runs, newest first."""
    rows = await run_store.list_runs(session=session, table=table, state=state, limit=limit)
    return TransformList(items=[run_store.to_read(run, settings) for run in rows])


@router.get(
    "/v1/transforms/{transform_id}",
    summary="Get a transform run",
    response_model=TransformRead,
    responses=error_responses(404),
)
async def get_transform(
    transform_id: str, session: SessionDep, settings: SettingsDep, _principal: ReadScope
) -> TransformRead:
    """Return one transform run."""
    return run_store.to_read(await run_store.get_run(session=session, run_id=transform_id), settings)


@router.get(
    "/v1/transforms/{transform_id}/logs",
    summary="Get a transform run's engine logs",
    response_model=TransformLogs,
    responses=error_responses(404),
)
async def get_transform_logs(
    transform_id: str, session: SessionDep, settings: SettingsDep, aws: AwsDep, _principal: ReadScope
) -> TransformLogs:
    """Return the tail of a run's engine logs (empty for the local engine)."""
    run = await run_store.get_run(session=session, run_id=transform_id)
    text = await fetch_logs(aws, settings, run) if run.engine != "local" else ""
    return TransformLogs(id=run.id, engine=run.engine, log_url=run.log_url, text=text)
