"""HTTP routes of task chains (Datanectar): list chains, run a task, follow a run (status, events), see a task's
log and traceback, retry a failed task, list recent runs.

The routes live under ``/v1/chains``; the seed's paths (``/api/chains``, ``/api/chainstatus``, and the same
sub-paths under ``/api/chains``) answer the same way as undocumented aliases, with URLs under ``/api``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Query, Request, status
from fastapi.responses import StreamingResponse

from services.transform.chains import service as chain_service
from services.transform.deps import WiringDep
from services.transform.models import (
    ChainIndex,
    ChainRetried,
    ChainRunList,
    ChainStatus,
    ChainSubmitted,
    ChainTaskDetail,
    IsoDateTime,
)
from shared.auth import JobsAdminScope, ReadScope
from shared.errors import UnprocessableError
from shared.openapi import error_responses


@dataclass(frozen=True)
class ChainPaths:
    """Where the chain routes live: the index (also the base of each task's URL and the sub-routes) and status."""

    chains: str
    status: str


V1_PATHS = ChainPaths(chains="/v1/chains", status="/v1/chains/status")
SEED_PATHS = ChainPaths(chains="/api/chains", status="/api/chainstatus")

_TARGET = "a target: chains/<type>/<chain>/<Task>/<md5>/ (a file name after it is ignored)"
RunState = Literal["RUNNING", "DONE", "FAILED"]


def _alias_note(method: str, path: str | None) -> str:
    if path is None:
        return ""
    return f"\n\nSeed-compatible alias: `{method} {path}` (same behaviour; not listed in this document)."


def _merge_params(query: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
    both = sorted(name for name in query if body and name in body and str(body[name]) != query[name])
    if both:
        details = [{"field": name, "reason": "given differently in the query and the body"} for name in both]
        raise UnprocessableError(f"conflicting parameters: {', '.join(both)}", details=details)
    return {**query, **(body or {})}


# OpenAPI before 3.2 has a text/event-stream `schema` describe ONE event (as SSE clients read it: event name and
# data line), not the stream as a string; `data` is the JSON of a run's status or of {"runs": [...]}.
_EVENT_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "runs"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "example": {"event": "runs", "data": '{"runs": []}'},
}


def chain_routes(paths: ChainPaths, *, aliases: ChainPaths | None = None) -> APIRouter:
    """Return the chain routes under ``paths``: documented (naming their ``aliases``) or, without, hidden aliases."""
    router = APIRouter(tags=["chains"], include_in_schema=aliases is not None)

    def _status_url(request: Request, target: str) -> str:
        return f"{str(request.base_url).rstrip('/')}{paths.status}?chain={quote(target, safe='/')}"

    @router.get(
        paths.chains,
        summary="List task chains",
        description="Every chain type, its chains and their tasks (params schema, output, retries, timeout, URL)."
        + _alias_note("GET", aliases.chains if aliases else None),
        response_model=ChainIndex,
    )
    async def list_chains(_principal: ReadScope) -> ChainIndex:
        """List every chain type, chain and task."""
        return ChainIndex(types=chain_service.describe_chains(tasks_path=paths.chains))

    @router.post(
        paths.chains + "/{type_name}/{chain}/{task}",
        summary="Run a task (and what it requires)",
        description="Record a run of the task and schedule every task below it whose target is missing; complete "
        "targets are never rebuilt, so a resubmitted chain resumes at the failed task. Params come from the JSON "
        "body and/or the query string (`?day=2026-11-01`), validated by the task's Params model; unknown names are "
        "refused (422) and named."
        + _alias_note("POST", f"{aliases.chains}/{{type_name}}/{{chain}}/{{task}}" if aliases else None),
        response_model=ChainSubmitted,
        status_code=status.HTTP_202_ACCEPTED,
        responses=error_responses(404),
    )
    async def run_chain_task(
        type_name: str,
        chain: str,
        task: str,
        request: Request,
        wiring: WiringDep,
        _principal: JobsAdminScope,
        params: Annotated[
            dict[str, Any] | None, Body(description="the task's params", examples=[{"name": "ada"}])
        ] = None,
    ) -> ChainSubmitted:
        """Submit a run of a task (its missing requirements first) and say where to follow it."""
        run_id, ref, state = await chain_service.submit(
            scheduler=chain_service.scheduler_of(wiring),
            type_name=type_name,
            chain=chain,
            task=task,
            params=_merge_params(dict(request.query_params), params),
        )
        return ChainSubmitted(
            run_id=run_id,
            target=ref.prefix,
            job_status=state,
            status_url=_status_url(request, ref.prefix),
            expires_in=chain_service.URL_TTL_S,
        )

    @router.get(
        paths.status,
        summary="Get a run's status and DAG",
        description="The root's state, each task's state, attempts, timings and error, the DAG, and a presigned "
        "URL of the output once done. Give a target (`chain=`) or a run id (`run=`)."
        + _alias_note("GET", aliases.status if aliases else None),
        response_model=ChainStatus,
        responses=error_responses(404),
    )
    async def get_chain_status(
        wiring: WiringDep,
        _principal: ReadScope,
        chain: Annotated[str | None, Query(description=_TARGET)] = None,
        run: Annotated[str | None, Query(description="a run id")] = None,
    ) -> ChainStatus:
        """Return a run's status, its tasks, its DAG and its output URL once done."""
        body = await chain_service.status(scheduler=chain_service.scheduler_of(wiring), target=chain, run_id=run)
        return ChainStatus(**body)

    @router.get(
        paths.chains + "/task",
        summary="Get one task's params, log and traceback",
        description="The task's state, params, its `log.txt` (what it printed and logged) and the full traceback "
        "of its last failure." + _alias_note("GET", f"{aliases.chains}/task" if aliases else None),
        response_model=ChainTaskDetail,
        responses=error_responses(404),
    )
    async def get_chain_task(
        wiring: WiringDep, _principal: ReadScope, chain: Annotated[str, Query(description=_TARGET)]
    ) -> ChainTaskDetail:
        """Return one task's params, log and traceback."""
        return ChainTaskDetail(
            **await chain_service.task_detail(scheduler=chain_service.scheduler_of(wiring), target=chain)
        )

    @router.post(
        paths.chains + "/retry",
        summary="Retry a failed task",
        description="Start a FAILED task again, with the dependents that failed because of it (409 when the task "
        "is not FAILED)." + _alias_note("POST", f"{aliases.chains}/retry" if aliases else None),
        response_model=ChainRetried,
        responses=error_responses(404, 409),
    )
    async def retry_chain_task(
        request: Request,
        wiring: WiringDep,
        _principal: JobsAdminScope,
        chain: Annotated[str, Query(description=_TARGET)],
    ) -> ChainRetried:
        """Retry a failed task and its failed dependents."""
        ref, reset = await chain_service.retry(scheduler=chain_service.scheduler_of(wiring), target=chain)
        return ChainRetried(target=ref.prefix, reset=reset, status_url=_status_url(request, ref.prefix))

    @router.get(
        paths.chains + "/runs",
        summary="List recent runs",
        description="Recent runs across all chains, newest first, filtered by state, chain (`type/chain` or the "
        "chain's name) and submission time." + _alias_note("GET", f"{aliases.chains}/runs" if aliases else None),
        response_model=ChainRunList,
    )
    async def list_chain_runs(
        wiring: WiringDep,
        _principal: ReadScope,
        state: Annotated[RunState | None, Query(description="RUNNING, DONE or FAILED")] = None,
        chain: Annotated[str | None, Query(description="`type/chain` or a chain name")] = None,
        since: Annotated[IsoDateTime | None, Query(description="only runs submitted at or after this time")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ChainRunList:
        """List recent runs."""
        items = await chain_service.list_runs(
            scheduler=chain_service.scheduler_of(wiring), state=state, chain=chain, since=since, limit=limit
        )
        return ChainRunList(items=items)

    @router.get(
        paths.chains + "/events",
        summary="Get live updates (server-sent events)",
        description="A `text/event-stream`: `status` events with a run's status (as the status route) each time it "
        "changes when `chain=` or `run=` is given, else `runs` events with the recent runs."
        + _alias_note("GET", f"{aliases.chains}/events" if aliases else None),
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {"schema": _EVENT_SCHEMA}}}, **error_responses(404)},
    )
    async def get_chain_events(
        request: Request,
        wiring: WiringDep,
        _principal: ReadScope,
        chain: Annotated[str | None, Query(description=_TARGET)] = None,
        run: Annotated[str | None, Query(description="a run id")] = None,
    ) -> StreamingResponse:
        """Stream a run's status (or the recent runs) as server-sent events."""
        scheduler = chain_service.scheduler_of(wiring)
        if chain or run:  # a 404 now rather than an empty stream
            await chain_service.status(scheduler=scheduler, target=chain, run_id=run)
        stream = chain_service.events(
            scheduler=scheduler, target=chain, run_id=run, is_disconnected=request.is_disconnected
        )
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return router


router = APIRouter()
router.include_router(chain_routes(V1_PATHS, aliases=SEED_PATHS))
router.include_router(chain_routes(SEED_PATHS))
