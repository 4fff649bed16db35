"""HTTP routes of task chains (Datanectar): list chains, run a task, follow a target's status and DAG."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, status
from pydantic import BaseModel, Field, ValidationError

from services.transform.chains import service
from services.transform.chains.runner import ChainError
from shared.auth import Principal, require_scope
from shared.deps import AwsDep, RedisDep, SettingsDep
from shared.errors import NotFoundError, UnprocessableError
from shared.http import ERROR_RESPONSES

router = APIRouter(tags=["chains"])

ReadScope = Annotated[Principal, Depends(require_scope("read"))]
AdminScope = Annotated[Principal, Depends(require_scope("jobs:admin"))]


class ChainIndex(BaseModel):
    """Every chain type, its chains and their tasks."""

    types: list[dict[str, Any]]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "types": [
                        {
                            "type": "testchains",
                            "chains": [
                                {
                                    "name": "hello",
                                    "doc": "Hello chain",
                                    "tasks": [
                                        {
                                            "name": "ShoutTask",
                                            "output": "out.json",
                                            "url": "/api/chains/testchains/hello/ShoutTask",
                                            "params_schema": {},
                                        }
                                    ],
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    }


class ChainSubmitted(BaseModel):
    """A queued (or already queued or running) task run."""

    target: str = Field(examples=["chains/testchains/hello/ShoutTask/1f3870be274f6c49b3e31a0c6728957f/"])
    job_status: str = Field(examples=["QUEUED"])
    status_url: str
    expires_in: int | None = None


class ChainStatus(BaseModel):
    """A target's status, its output's presigned URL once done, and the task graph below it."""

    target: str
    job_status: str = Field(description="PENDING, QUEUED, RUNNING, DONE or FAILED")
    error: str | None
    resource_url: str | None
    expires_in: int | None
    dag: dict[str, Any] = Field(description="nodes (target, task, params, state) and edges (from requirement to task)")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "target": "chains/testchains/hello/ShoutTask/1f38.../",
                    "job_status": "DONE",
                    "error": None,
                    "resource_url": "https://...",
                    "expires_in": 600,
                    "dag": {"root": "chains/testchains/hello/ShoutTask/1f38.../", "nodes": [], "edges": []},
                }
            ]
        }
    }


def _not_found(exc: ChainError) -> NotFoundError:
    return NotFoundError(str(exc))


@router.get("/api/chains", summary="List task chains", response_model=ChainIndex, responses=ERROR_RESPONSES)
async def list_chains(_principal: ReadScope) -> ChainIndex:
    return ChainIndex(types=service.describe_chains())


@router.post(
    "/api/chains/{type_name}/{chain}/{task}",
    summary="Run a task (and what it requires)",
    response_model=ChainSubmitted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERROR_RESPONSES,
)
async def run_chain_task(
    type_name: str,
    chain: str,
    task: str,
    request: Request,
    settings: SettingsDep,
    redis: RedisDep,
    _principal: AdminScope,
    params: Annotated[dict[str, Any] | None, Body(description="the task's params", examples=[{"name": "ada"}])] = None,
) -> ChainSubmitted:
    try:
        ref, state = await service.submit(
            settings=settings,
            redis=redis,
            arq=request.app.state.arq,
            type_name=type_name,
            chain=chain,
            task=task,
            params=params or {},
        )
    except ChainError as exc:
        raise _not_found(exc) from exc
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        raise UnprocessableError("invalid task params", details=details) from exc
    return ChainSubmitted(
        target=ref.prefix,
        job_status=state,
        status_url=f"/api/chainstatus?chain={ref.prefix}",
        expires_in=service.URL_TTL_S,
    )


@router.get(
    "/api/chainstatus", summary="Get a target's status and DAG", response_model=ChainStatus, responses=ERROR_RESPONSES
)
async def chain_status(
    settings: SettingsDep,
    redis: RedisDep,
    aws: AwsDep,
    _principal: ReadScope,
    chain: Annotated[str, Query(description="a target: chains/<type>/<chain>/<Task>/<md5>/ (out.* optional)")],
) -> ChainStatus:
    try:
        return ChainStatus(**await service.status(settings=settings, aws=aws, redis=redis, path=chain))
    except ChainError as exc:
        raise _not_found(exc) from exc
