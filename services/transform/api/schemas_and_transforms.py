"""HTTP routes of the transform service: schema registry and transform runs."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response, status

from services.transform import registry, runs
from services.transform.models import (
    SchemaList,
    SchemaRead,
    TransformCreate,
    TransformList,
    TransformLogs,
    TransformRead,
)
from services.transform.spark.backends import fetch_logs
from shared.auth import Principal, require_scope
from shared.deps import AwsDep, SessionDep, SettingsDep
from shared.errors import UnprocessableError
from shared.http import ERROR_RESPONSES

router = APIRouter()

ReadScope = Annotated[Principal, Depends(require_scope("read"))]
AdminScope = Annotated[Principal, Depends(require_scope("jobs:admin"))]

_EXAMPLE_YAML = """name: clicks
version: 1
columns:
  - {name: event_id, source: event_id, type: varchar(64), nullable: false}
  - {name: ad_id, source: ad.id, type: varchar(128)}
  - {name: first_item, source: "items[0].sku", type: varchar(32)}
  - {name: event_time, source: ts, type: timestamp, transform: epoch_millis_to_timestamp, nullable: false}
  - {name: dt, source: ts, type: date, transform: epoch_millis_to_timestamp, nullable: false}
partition_column: dt
sort_key: [event_time]
dist_key: ad_id
"""

_SCHEMA_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}, "example": _EXAMPLE_YAML},
            "application/json": {
                "schema": {"type": "object", "properties": {"yaml": {"type": "string"}}, "required": ["yaml"]},
                "example": {"yaml": _EXAMPLE_YAML},
            },
        },
    }
}


async def _schema_text(request: Request) -> str:
    body = await request.body()
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UnprocessableError("body is not JSON", details=[{"field": "body", "reason": str(exc)}]) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("yaml"), str):
            raise UnprocessableError(
                'send {"yaml": "..."} or the YAML itself', details=[{"field": "yaml", "reason": "missing"}]
            )
        return payload["yaml"]
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise UnprocessableError("schema must be UTF-8", details=[{"field": "body", "reason": str(exc)}]) from exc


@router.post(
    "/v1/schemas",
    summary="Register a schema version",
    description='Upload a schema YAML (as `application/yaml`, or JSON `{"yaml": ...}`). Versions are immutable: '
    "the same document again answers 200, a different one under an existing version 409. An invalid schema "
    "answers 422 with the line and the reason.",
    response_model=SchemaRead,
    status_code=status.HTTP_201_CREATED,
    tags=["schemas"],
    responses={200: {"model": SchemaRead, "description": "identical version already registered"}, **ERROR_RESPONSES},
    openapi_extra=_SCHEMA_BODY,
)
async def upload_schema(
    request: Request,
    response: Response,
    session: SessionDep,
    aws: AwsDep,
    settings: SettingsDep,
    _principal: AdminScope,
) -> SchemaRead:
    text = await _schema_text(request)
    row, created = await registry.register_schema(session=session, s3=await aws.get("s3"), settings=settings, text=text)
    if not created:
        response.status_code = status.HTTP_200_OK
    return registry.read_model(row, settings)


@router.get(
    "/v1/schemas",
    summary="List schema versions",
    response_model=SchemaList,
    tags=["schemas"],
    responses=ERROR_RESPONSES,
)
async def list_schemas(
    session: SessionDep,
    settings: SettingsDep,
    _principal: ReadScope,
    name: Annotated[str | None, Query(description="only this table")] = None,
) -> SchemaList:
    rows = await registry.list_schemas(session=session, name=name)
    return SchemaList(items=[registry.summary(row, settings) for row in rows])


@router.get(
    "/v1/schemas/{name}/{version}",
    summary="Get one schema version",
    response_model=SchemaRead,
    tags=["schemas"],
    responses=ERROR_RESPONSES,
)
async def get_schema(
    name: str, version: int, session: SessionDep, settings: SettingsDep, _principal: ReadScope
) -> SchemaRead:
    row = await registry.get_schema_row(session=session, name=name, version=version)
    return registry.read_model(row, settings)


@router.post(
    "/v1/transforms",
    summary="Start transform runs",
    response_model=TransformList,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["transforms"],
    responses=ERROR_RESPONSES,
)
async def create_transforms(
    body: TransformCreate, request: Request, session: SessionDep, settings: SettingsDep, _principal: AdminScope
) -> TransformList:
    created = await runs.create_runs(session=session, arq=request.app.state.arq, settings=settings, request=body)
    return TransformList(items=[runs.to_read(run, settings) for run in created])


@router.get(
    "/v1/transforms",
    summary="List transform runs",
    response_model=TransformList,
    tags=["transforms"],
    responses=ERROR_RESPONSES,
)
async def list_transforms(
    session: SessionDep,
    settings: SettingsDep,
    _principal: ReadScope,
    table: Annotated[str | None, Query(description="only this table")] = None,
    state: Annotated[str | None, Query(description="queued, running, succeeded or failed")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TransformList:
    rows = await runs.list_runs(session=session, table=table, state=state, limit=limit)
    return TransformList(items=[runs.to_read(run, settings) for run in rows])


@router.get(
    "/v1/transforms/{transform_id}",
    summary="Get a transform run",
    response_model=TransformRead,
    tags=["transforms"],
    responses=ERROR_RESPONSES,
)
async def get_transform(
    transform_id: str, session: SessionDep, settings: SettingsDep, _principal: ReadScope
) -> TransformRead:
    return runs.to_read(await runs.get_run(session=session, run_id=transform_id), settings)


@router.get(
    "/v1/transforms/{transform_id}/logs",
    summary="Get a transform run's engine logs",
    response_model=TransformLogs,
    tags=["transforms"],
    responses=ERROR_RESPONSES,
)
async def get_transform_logs(
    transform_id: str, session: SessionDep, settings: SettingsDep, aws: AwsDep, _principal: ReadScope
) -> TransformLogs:
    run = await runs.get_run(session=session, run_id=transform_id)
    text = await fetch_logs(aws, settings, run) if run.engine != "local" else ""
    return TransformLogs(id=run.id, engine=run.engine, log_url=run.log_url, text=text)
