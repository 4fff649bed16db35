"""Execute a task and, first, every task it requires that is not complete yet; report statuses and the DAG."""

from __future__ import annotations

import traceback
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError
from redis.asyncio import Redis

from services.transform.chains.base import Chain, Task, TaskContext, TaskRef, discover_chains, ref_for
from services.transform.settings import TransformSettings
from shared.errors import NotFoundError, UnprocessableError
from shared.logging import get_logger
from shared.messages import utc_now

log = get_logger(__name__)
MAX_DEPTH = 50


class ChainNotFoundError(NotFoundError):
    """An unknown chain type, chain, task or target."""


class ChainTooDeepError(RuntimeError):
    """A chain requires more than MAX_DEPTH tasks in a row (most likely a cycle)."""


def status_key(settings: TransformSettings, ref: TaskRef) -> str:
    """Return the Redis hash holding a target's status."""
    return f"{settings.resource_prefix}:transform:chain:{ref.prefix}"


def resolve(
    chains: dict[str, dict[str, Chain]], type_name: str, chain_name: str, task_name: str, params: dict[str, Any]
) -> tuple[type[Task], Any, TaskRef]:
    """Find a task class and validate its params; raise ChainNotFoundError or UnprocessableError."""
    chain = chains.get(type_name, {}).get(chain_name)
    if chain is None or task_name not in chain.tasks:
        raise ChainNotFoundError(f"no task {type_name}/{chain_name}/{task_name}")
    task_cls = chain.tasks[task_name]
    try:
        model = task_cls.Params.model_validate(params)
    except ValidationError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]} for e in exc.errors()]
        raise UnprocessableError("invalid task params", details=details) from exc
    return task_cls, model, ref_for(chains, task_cls, model)


def _requirements(chains: dict[str, dict[str, Chain]], ref: TaskRef) -> list[tuple[type[Task], Any, TaskRef]]:
    task_cls, model, _ = resolve(chains, ref.type, ref.chain, ref.task, ref.params)
    return [(cls, params, ref_for(chains, cls, params)) for cls, params in task_cls().requires(model)]


async def output_key(s3: Any, settings: TransformSettings, ref: TaskRef) -> str | None:
    """Return the key of a target's ``out.*`` when the task is complete, else None."""
    listing = await s3.list_objects_v2(Bucket=settings.bucket("chains"), Prefix=f"{ref.prefix}out.")
    contents = listing.get("Contents", [])
    return contents[0]["Key"] if contents else None


async def _set_status(redis: Redis, settings: TransformSettings, ref: TaskRef, state: str, error: str = "") -> None:
    await redis.hset(
        status_key(settings, ref),
        mapping={"state": state, "error": error[:4000], "updated_at": utc_now().isoformat(), "params": ref.params_json},
    )


async def run_task(
    *,
    settings: TransformSettings,
    aws: Any,
    redis: Redis,
    ref: TaskRef,
    chains: dict[str, dict[str, Chain]] | None = None,
    depth: int = 0,
) -> str:
    """Make ``ref`` complete: run its missing requirements depth-first, then it; return its output key."""
    chains = chains or discover_chains()
    if depth > MAX_DEPTH:
        raise ChainTooDeepError(f"chain is deeper than {MAX_DEPTH} tasks (a cycle?)")
    s3 = await aws.get("s3")
    done = await output_key(s3, settings, ref)
    if done:
        await _set_status(redis, settings, ref, "DONE")
        return done
    inputs = []
    for _, _, dependency in _requirements(chains, ref):
        key = await run_task(settings=settings, aws=aws, redis=redis, ref=dependency, chains=chains, depth=depth + 1)
        response = await s3.get_object(Bucket=settings.bucket("chains"), Key=key)
        async with response["Body"] as body:
            inputs.append(await body.read())
    task_cls, model, _ = resolve(chains, ref.type, ref.chain, ref.task, ref.params)
    await _set_status(redis, settings, ref, "RUNNING")
    context = TaskContext(settings=settings, aws=aws)
    bucket = settings.bucket("chains")
    await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}params.json", Body=ref.params_json.encode())
    context.log(f"{utc_now().isoformat()} start {ref.prefix}")
    try:
        output = await task_cls().run(context, model, inputs)
    except Exception as exc:
        context.log(traceback.format_exc())
        await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}log.txt", Body="\n".join(context.lines).encode())
        await _set_status(redis, settings, ref, "FAILED", f"{type(exc).__name__}: {exc}")
        log.warning("chain_task_failed", target=ref.prefix, error=str(exc))
        raise
    context.log(f"{utc_now().isoformat()} done, {len(output)} bytes")
    await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}log.txt", Body="\n".join(context.lines).encode())
    key = f"{ref.prefix}out.{task_cls.extension}"
    await s3.put_object(Bucket=bucket, Key=key, Body=output)  # last: its existence means complete
    await _set_status(redis, settings, ref, "DONE")
    log.info("chain_task_done", target=ref.prefix)
    return key


async def task_status(*, settings: TransformSettings, aws: Any, redis: Redis, ref: TaskRef) -> dict[str, Any]:
    """Return a target's status: DONE when its output exists, else what Redis says (PENDING when nothing)."""
    s3 = await aws.get("s3")
    key = await output_key(s3, settings, ref)
    stored = {k.decode(): v.decode() for k, v in (await redis.hgetall(status_key(settings, ref))).items()}
    state = "DONE" if key else stored.get("state", "PENDING")
    if state == "DONE" and not key:
        state = "PENDING"
    return {
        "target": ref.prefix,
        "task": ref.task,
        "params": ref.params,
        "state": state,
        "error": stored.get("error") or None,
        "output_key": key,
    }


async def dag(*, settings: TransformSettings, aws: Any, redis: Redis, ref: TaskRef) -> dict[str, Any]:
    """Return the task graph below ``ref``: nodes with statuses and edges (requirement -> task)."""
    chains = discover_chains()
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    async def _walk(current: TaskRef, depth: int) -> None:
        if current.prefix in nodes or depth > MAX_DEPTH:
            return
        nodes[current.prefix] = await task_status(settings=settings, aws=aws, redis=redis, ref=current)
        for _, _, dependency in _requirements(chains, current):
            edges.append({"from": dependency.prefix, "to": current.prefix})
            await _walk(dependency, depth + 1)

    await _walk(ref, 0)
    return {"root": ref.prefix, "nodes": list(nodes.values()), "edges": edges}


def parse_target(path: str) -> tuple[str, str, str, str]:
    """Split ``chains/<type>/<chain>/<Task>/<md5>/[out.*]`` into its parts; raise ChainNotFoundError if not one."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 5 or parts[0] != "chains":
        raise ChainNotFoundError("expected chains/<type>/<chain>/<Task>/<md5>/")
    return parts[1], parts[2], parts[3], parts[4]


async def ref_from_target(*, settings: TransformSettings, aws: Any, redis: Redis, path: str) -> TaskRef:
    """Rebuild a TaskRef from a target path (params from Redis, else the target's params.json)."""
    type_name, chain, task, digest = parse_target(path)
    prefix = f"chains/{type_name}/{chain}/{task}/{digest}/"
    stored = await redis.hget(f"{settings.resource_prefix}:transform:chain:{prefix}", "params")
    if stored is None:
        s3 = await aws.get("s3")
        try:
            response = await s3.get_object(Bucket=settings.bucket("chains"), Key=f"{prefix}params.json")
        except ClientError as exc:
            raise ChainNotFoundError(f"unknown target {prefix}") from exc
        async with response["Body"] as body:
            stored = await body.read()
    ref = TaskRef(type_name, chain, task, stored.decode())
    if ref.digest != digest:
        raise ChainNotFoundError(f"params stored for {prefix} do not match its digest")
    return ref
