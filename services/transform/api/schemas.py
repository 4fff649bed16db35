"""HTTP routes of the schema registry: register, list and read schema versions.

An upload is bounded (``MAX_SCHEMA_BYTES``, 413 beyond, while streaming) and parsed off the event loop, like
every read of a stored version: a big or slow document never stalls the service's other requests.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from services.transform import registry
from services.transform.deps import AwsDep, SessionDep, SettingsDep
from services.transform.models import SchemaList, SchemaRead
from shared.auth import JobsAdminScope, ReadScope
from shared.errors import UnprocessableError
from shared.guard import body_limit
from shared.openapi import error_responses, rule_responses
from shared.schemas import MAX_VERSION, NAME_PATTERN

router = APIRouter(tags=["schemas"])

# A schema is a few kilobytes (Redshift tables have at most 1,600 columns, ~100 bytes each as YAML).
MAX_SCHEMA_BYTES = 256 * 1024

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

# The body is read by ``schema_text`` (YAML or JSON), so FastAPI cannot derive it: describe it here.
_SCHEMA_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            # The YAML document is a mapping (a client serialises the example below as YAML, not as a quoted string).
            "application/yaml": {"schema": {"type": "object"}, "example": yaml.safe_load(_EXAMPLE_YAML)},
            "application/json": {
                "schema": {"type": "object", "properties": {"yaml": {"type": "string"}}, "required": ["yaml"]},
                "example": {"yaml": _EXAMPLE_YAML},
            },
        },
    }
}


async def schema_text(request: Request) -> str:
    """Return the schema document of the body: the YAML itself, or the ``yaml`` field of a JSON object."""
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


SchemaText = Annotated[str, Depends(schema_text)]


@router.post(
    "/v1/schemas",
    summary="Register a schema version",
    description='Upload a schema YAML (as `application/yaml`, or JSON `{"yaml": ...}`). Versions are immutable: '
    "the same document again answers 200, a different one under an existing version 409. An invalid schema "
    "answers 422 with the line and the reason.",
    response_model=SchemaRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SchemaRead, "description": "identical version already registered"},
        **error_responses(409),
        # The body is a free-form YAML mapping in the spec: its format (names, SQL types, source paths, keys that
        # name columns) is checked by shared.schemas, with the line and reason in the 422.
        **rule_responses(422, "the document is a valid table schema (see shared/schemas.py: name, version, columns)"),
    },
    openapi_extra=_SCHEMA_BODY | body_limit(MAX_SCHEMA_BYTES),
)
async def create_schema(
    _principal: JobsAdminScope,  # first: a request without a key gets 401 before its body is read
    text: SchemaText,
    response: Response,
    session: SessionDep,
    aws: AwsDep,
    settings: SettingsDep,
) -> SchemaRead:
    """Register a schema version (201), or confirm an identical one (200)."""
    row, created = await registry.register_schema(session=session, s3=await aws.get("s3"), settings=settings, text=text)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await asyncio.to_thread(registry.read_model, row, settings)


@router.get("/v1/schemas", summary="List schema versions", response_model=SchemaList)
async def list_schemas(
    session: SessionDep,
    settings: SettingsDep,
    _principal: ReadScope,
    name: Annotated[str | None, Query(description="only this table")] = None,
) -> SchemaList:
    """List registered schema versions, newest first per name."""
    rows = await registry.list_schemas(session=session, name=name)
    return SchemaList(items=[registry.summary(row, settings) for row in rows])


@router.get(
    "/v1/schemas/{name}/{version}",
    summary="Get one schema version",
    response_model=SchemaRead,
    responses=error_responses(404),
)
async def get_schema(
    name: Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="the table's name")],
    version: Annotated[int, Path(ge=1, le=MAX_VERSION, description="the version")],
    session: SessionDep,
    settings: SettingsDep,
    _principal: ReadScope,
) -> SchemaRead:
    """Return one schema version with its definition and YAML."""
    row = await registry.get_schema_row(session=session, name=name, version=version)
    return await asyncio.to_thread(registry.read_model, row, settings)
