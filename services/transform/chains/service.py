"""Chain operations called by the API and the worker: describe, submit, status, task detail, runs, retry, sweep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from services.transform.chains.base import TaskRef, discover_chains
from services.transform.chains.graph import ChainNotFoundError, expand, parse_target, resolve
from services.transform.chains.scheduler import Scheduler
from services.transform.chains.state import DONE, FAILED, PENDING, RUNNING, ChainStore, TaskRecord
from services.transform.chains.targets import is_complete, output_key, presign, read_text
from services.transform.settings import TransformSettings
from services.transform.wiring import TransformWiring
from shared.errors import ConflictError
from shared.logging import get_logger

log = get_logger(__name__)
URL_TTL_S = 600
EVENT_POLL_S = 0.5
KEEPALIVE_S = 15.0


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
                                "retries": cls.retries,
                                "timeout_s": cls.timeout_s,
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
    *, scheduler: Scheduler, type_name: str, chain: str, task: str, params: dict[str, Any]
) -> tuple[str, TaskRef, str]:
    """Validate params, record a run and schedule the missing targets; return (run id, root, root state)."""
    root = resolve(scheduler.chains, type_name, chain, task, params).ref
    run_id = await scheduler.submit(root)
    return run_id, root, (await scheduler.store.get(root.prefix)).state


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, UTC).isoformat() if value else None


def _task_view(record: TaskRecord, ref: TaskRef, complete: bool) -> dict[str, Any]:
    started, finished = record.number("started_at"), record.number("finished_at")
    state = DONE if complete else (PENDING if record.state == DONE else record.state)
    end = finished or (time.time() if state == RUNNING else None)
    return {
        "target": ref.prefix,
        "task": ref.task,
        "params": ref.params,
        "state": state,
        "attempts": record.attempts,
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_s": round(end - started, 3) if started and end and end >= started else None,
        "error": record.fields.get("error") or None,
        "cause": record.fields.get("cause") or None,
    }


async def _ref_of_target(scheduler: Scheduler, path: str) -> TaskRef:
    type_name, chain, task, digest = parse_target(path)
    prefix = f"chains/{type_name}/{chain}/{task}/{digest}/"
    params = (await scheduler.store.get(prefix)).fields.get("params")
    if params is None:
        params = await read_text(await scheduler.aws.get("s3"), scheduler.settings, f"{prefix}params.json")
    if params is None:
        raise ChainNotFoundError(f"unknown target {prefix}")
    ref = TaskRef(type_name, chain, task, params)
    if ref.digest != digest:
        raise ChainNotFoundError(f"params stored for {prefix} do not match its digest")
    return ref


async def _root_of(scheduler: Scheduler, *, target: str | None, run_id: str | None) -> tuple[TaskRef, str | None]:
    if run_id:
        raw = await scheduler.store.redis.hgetall(scheduler.store.run_key(run_id))
        run = {k.decode(): v.decode() for k, v in raw.items()}
        if not run:
            raise ChainNotFoundError(f"unknown run {run_id}")
        return TaskRef(run["type"], run["chain"], run["task"], run["params"]), run_id
    if not target:
        raise ChainNotFoundError("give a target (chain=) or a run id (run=)")
    return await _ref_of_target(scheduler, target), None


async def status(*, scheduler: Scheduler, target: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Return a root's state, each task's state, timings and error, its DAG and, once done, its output's URL."""
    root, run_id = await _root_of(scheduler, target=target, run_id=run_id)
    s3 = await scheduler.aws.get("s3")
    tasks: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for node in reversed(expand(root, scheduler.chains)):  # the root first
        record = await scheduler.store.get(node.ref.prefix)
        complete = await is_complete(s3, scheduler.settings, node.ref.prefix)
        tasks.append(_task_view(record, node.ref, complete))
        edges += [{"from": r.prefix, "to": node.ref.prefix} for r in node.requires]
    current = tasks[0]
    key = await output_key(s3, scheduler.settings, root.prefix) if current["state"] == DONE else None
    resource_url = await presign(s3, scheduler.settings, key, URL_TTL_S) if key else None
    return {
        "run_id": run_id,
        "target": root.prefix,
        "job_status": current["state"],
        "error": current["error"],
        "resource_url": resource_url,
        "expires_in": URL_TTL_S if resource_url else None,
        "tasks": tasks,
        "dag": {"root": root.prefix, "nodes": tasks, "edges": edges},
    }


async def task_detail(*, scheduler: Scheduler, target: str) -> dict[str, Any]:
    """Return one task's state, params, log (``log.txt``) and full traceback of its last failure."""
    ref = await _ref_of_target(scheduler, target)
    s3 = await scheduler.aws.get("s3")
    record = await scheduler.store.get(ref.prefix)
    view = _task_view(record, ref, await is_complete(s3, scheduler.settings, ref.prefix))
    log_text = await read_text(s3, scheduler.settings, f"{ref.prefix}log.txt")
    return {**view, "log": log_text or "", "traceback": record.fields.get("traceback") or None}


def run_state(root_state: str) -> str:
    """Return a run's state from its root task's: DONE, FAILED, else RUNNING."""
    return root_state if root_state in (DONE, FAILED) else RUNNING


async def list_runs(
    *,
    scheduler: Scheduler,
    state: str | None = None,
    chain: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Return recent runs (newest first) with their state, filtered by state, chain (``type/chain`` or name), since."""
    store = scheduler.store
    low = since.timestamp() if since else "-inf"
    ids = await store.redis.zrevrangebyscore(store.runs_key, "+inf", low, start=0, num=1000)
    s3 = await scheduler.aws.get("s3")
    runs = []
    for run_id in ids:
        raw = await store.redis.hgetall(store.run_key(run_id.decode()))
        if not raw:
            continue
        run = {k.decode(): v.decode() for k, v in raw.items()}
        if chain and chain not in (run["chain"], f"{run['type']}/{run['chain']}"):
            continue
        record = await store.get(run["root"])
        root_state = record.state
        if root_state != DONE and await is_complete(s3, scheduler.settings, run["root"]):
            root_state = DONE
        current = run_state(root_state)
        if state and current != state.upper():
            continue
        runs.append(
            {
                "run_id": run["id"],
                "type": run["type"],
                "chain": run["chain"],
                "task": run["task"],
                "params": json.loads(run["params"]),
                "target": run["root"],
                "state": current,
                "error": record.fields.get("error") or None,
                "created_at": _iso(float(run["created_at"])),
                "finished_at": _iso(record.number("finished_at")) if current != RUNNING else None,
            }
        )
        if len(runs) >= limit:
            break
    return runs


async def retry(*, scheduler: Scheduler, target: str) -> tuple[TaskRef, list[str]]:
    """Retry a failed task and the dependents that failed because of it; return the task and what was reset."""
    ref = await _ref_of_target(scheduler, target)
    record = await scheduler.store.get(ref.prefix)
    if record.state != FAILED:
        raise ConflictError(f"{ref.prefix} is {record.state}, not FAILED")
    return ref, await scheduler.retry(ref.prefix)


async def events(
    *, scheduler: Scheduler, target: str | None, run_id: str | None, is_disconnected: Any
) -> AsyncIterator[str]:
    """Yield server-sent events: the run's status (or the runs list) each time it changes, keep-alives between."""
    last = ""
    quiet_since = time.monotonic()
    while not await is_disconnected():
        if target or run_id:
            body = await status(scheduler=scheduler, target=target, run_id=run_id)
            body.pop("resource_url", None)  # a fresh signature each time is not a change
            name = "status"
        else:
            body = {"runs": await list_runs(scheduler=scheduler, limit=20)}
            name = "runs"
        for task in body.get("tasks", []):
            if task["state"] == RUNNING:
                task["duration_s"] = None  # a ticking clock is not a change either
        payload = json.dumps(body, sort_keys=True)
        if payload != last:
            last, quiet_since = payload, time.monotonic()
            yield f"event: {name}\ndata: {payload}\n\n"
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(EVENT_POLL_S)


def start_sweeper(wiring: TransformWiring, arq: Any) -> None:
    """Sweep once now (recover orphans left by a crash), then every ``chain_sweep_s``; stopped with the wiring."""
    scheduler = Scheduler.of(settings=wiring.settings, redis=arq, aws=wiring.aws, arq=arq)

    async def _loop() -> None:
        while True:
            try:
                recovered = await scheduler.sweep()
                if recovered:
                    log.info("chain_sweep", recovered=recovered)
            except Exception as exc:  # Redis restarting: try again at the next tick
                log.warning("chain_sweep_failed", error=str(exc))
            await asyncio.sleep(wiring.settings.chain_sweep_s)

    task = asyncio.create_task(_loop(), name="chain-sweeper")

    async def _stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    wiring.on_close(_stop)


def scheduler_of(wiring: TransformWiring, arq: Any | None = None) -> Scheduler:
    """Return a scheduler over the wiring's clients."""
    return Scheduler.of(settings=wiring.settings, redis=wiring.redis, aws=wiring.aws, arq=arq or wiring.arq)


def store_of(redis: Any, settings: TransformSettings) -> ChainStore:
    """Return the chain store of a deployment."""
    return ChainStore(redis, settings)
