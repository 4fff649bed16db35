"""Chain operations called by the API and the worker: describe, submit, run, status."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.transform.chains.base import TaskRef, discover_chains
from services.transform.chains.executor import dag, ref_from_target, resolve, run_task, status_key, task_status
from services.transform.settings import TransformSettings
from services.transform.wiring import TransformWiring
from shared.messages import utc_now

CHAIN_JOB = "run_chain_task"
URL_TTL_S = 600


def describe_chains(tasks_path: str) -> list[dict[str, Any]]:
    """Return every chain type, chain and task with its params schema and its URL under ``tasks_path``."""
    result = []
    for type_name, chains in sorted(discover_chains().items()):
        result.append(
            {
                "type": type_name,
                "chains": [
                    {
                        "name": chain.name,
                        "doc": chain.doc,
                        "tasks": [
                            {
                                "name": name,
                                "doc": (cls.__doc__ or "").strip(),
                                "output": f"out.{cls.extension}",
                                "params_schema": cls.Params.model_json_schema(),
                                "url": f"{tasks_path}/{type_name}/{chain.name}/{name}",
                            }
                            for name, cls in sorted(chain.tasks.items())
                        ],
                    }
                    for chain in sorted(chains.values(), key=lambda c: c.name)
                ],
            }
        )
    return result


async def submit(
    *,
    settings: TransformSettings,
    redis: Redis,
    arq: Any,
    type_name: str,
    chain: str,
    task: str,
    params: dict[str, Any],
) -> tuple[TaskRef, str]:
    """Queue a task run unless one is queued or running; return (target, state)."""
    _, _, ref = resolve(discover_chains(), type_name, chain, task, params)
    key = status_key(settings, ref)
    state = (await redis.hget(key, "state") or b"").decode()
    if state in ("QUEUED", "RUNNING"):
        return ref, state
    await redis.hset(
        key, mapping={"state": "QUEUED", "error": "", "params": ref.params_json, "updated_at": utc_now().isoformat()}
    )
    attempt = await redis.hincrby(key, "attempts", 1)
    await arq.enqueue_job(
        CHAIN_JOB,
        ref.type,
        ref.chain,
        ref.task,
        ref.params_json,
        _job_id=f"chain:{ref.prefix}:{attempt}",
        _queue_name=settings.arq_queue,
    )
    return ref, "QUEUED"


async def run_chain_job(ctx: dict[str, Any], type_name: str, chain: str, task: str, params_json: str) -> str:
    """arq job: make a target complete (its requirements first)."""
    wiring: TransformWiring = ctx["wiring"]
    ref = TaskRef(type_name, chain, task, params_json)
    try:
        return await run_task(settings=wiring.settings, aws=wiring.aws, redis=wiring.redis, ref=ref)
    except Exception as exc:  # the status says FAILED; arq need not retry a failing task
        return f"failed: {exc}"


async def status(*, settings: TransformSettings, aws: Any, redis: Redis, path: str) -> dict[str, Any]:
    """Return a target's status, a presigned URL of its output when done, and its DAG."""
    ref = await ref_from_target(settings=settings, aws=aws, redis=redis, path=path)
    current = await task_status(settings=settings, aws=aws, redis=redis, ref=ref)
    resource_url = None
    if current["output_key"]:
        s3 = await aws.get("s3")
        resource_url = await s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": settings.bucket("chains"), "Key": current["output_key"]},
            ExpiresIn=URL_TTL_S,
        )
    return {
        "target": ref.prefix,
        "job_status": current["state"],
        "error": current["error"],
        "resource_url": resource_url,
        "expires_in": URL_TTL_S if resource_url else None,
        "dag": await dag(settings=settings, aws=aws, redis=redis, ref=ref),
    }
