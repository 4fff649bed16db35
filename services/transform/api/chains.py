"""HTTP routes of task chains (Datanectar): list chains, run a task, follow a target's status and DAG.

The routes live under ``/v1/chains``; the seed's paths (``/api/chains``, ``/api/chainstatus``) answer the same
way as undocumented aliases, with the URLs in their answers under ``/api`` as the seed clients expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status

from services.transform.chains import service as chain_service
from services.transform.deps import ArqDep, AwsDep, RedisDep, SettingsDep
from services.transform.models import ChainIndex, ChainStatus, ChainSubmitted
from shared.auth import JobsAdminScope, ReadScope
from shared.openapi import error_responses


@dataclass(frozen=True)
class ChainPaths:
    """Where the chain routes live: the index (also the base of each task's URL) and the status route."""

    chains: str
    status: str


V1_PATHS = ChainPaths(chains="/v1/chains", status="/v1/chains/status")
SEED_PATHS = ChainPaths(chains="/api/chains", status="/api/chainstatus")

_TARGET = "a target: chains/<type>/<chain>/<Task>/<md5>/ (out.* optional)"


def _alias_note(method: str, path: str | None) -> str:
    if path is None:
        return ""
    return f"\n\nSeed-compatible alias: `{method} {path}` (same behaviour; not listed in this document)."


def chain_routes(paths: ChainPaths, *, aliases: ChainPaths | None = None) -> APIRouter:
    """Return the chain routes under ``paths``: documented (naming their ``aliases``) or, without, hidden aliases."""
    router = APIRouter(tags=["chains"], include_in_schema=aliases is not None)

    @router.get(
        paths.chains,
        summary="List task chains",
        description="Every chain type, its chains and their tasks (params schema, output, URL to run it)."
        + _alias_note("GET", aliases.chains if aliases else None),
        response_model=ChainIndex,
    )
    async def list_chains(_principal: ReadScope) -> ChainIndex:
        """List every chain type, chain and task."""
        return ChainIndex(types=chain_service.describe_chains(tasks_path=paths.chains))

    @router.post(
        paths.chains + "/{type_name}/{chain}/{task}",
        summary="Run a task (and what it requires)",
        description="Queue a run of the task's target unless one is queued or running; tasks whose output exists "
        "are never run again."
        + _alias_note("POST", f"{aliases.chains}/{{type_name}}/{{chain}}/{{task}}" if aliases else None),
        response_model=ChainSubmitted,
        status_code=status.HTTP_202_ACCEPTED,
        responses=error_responses(404),
    )
    async def run_chain_task(
        type_name: str,
        chain: str,
        task: str,
        settings: SettingsDep,
        redis: RedisDep,
        arq: ArqDep,
        _principal: JobsAdminScope,
        params: Annotated[
            dict[str, Any] | None, Body(description="the task's params", examples=[{"name": "ada"}])
        ] = None,
    ) -> ChainSubmitted:
        """Queue a task run (its requirements first) and say where to follow it."""
        ref, state = await chain_service.submit(
            settings=settings, redis=redis, arq=arq, type_name=type_name, chain=chain, task=task, params=params or {}
        )
        status_url = f"{paths.status}?chain={ref.prefix}"
        return ChainSubmitted(
            target=ref.prefix, job_status=state, status_url=status_url, expires_in=chain_service.URL_TTL_S
        )

    @router.get(
        paths.status,
        summary="Get a target's status and DAG",
        description="The target's state, a presigned URL of its output once done, and the task graph below it."
        + _alias_note("GET", aliases.status if aliases else None),
        response_model=ChainStatus,
        responses=error_responses(404),
    )
    async def get_chain_status(
        settings: SettingsDep,
        redis: RedisDep,
        aws: AwsDep,
        _principal: ReadScope,
        chain: Annotated[str, Query(description=_TARGET)],
    ) -> ChainStatus:
        """Return a target's status, its output URL once done, and its DAG."""
        return ChainStatus(**await chain_service.status(settings=settings, aws=aws, redis=redis, path=chain))

    return router


router = APIRouter()
router.include_router(chain_routes(V1_PATHS, aliases=SEED_PATHS))
router.include_router(chain_routes(SEED_PATHS))
