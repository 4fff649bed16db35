"""Run one chain task as one arq job: claim it (compare-and-set, with a lease), heartbeat while it runs, bound it
by its class's timeout, capture what it prints and logs, write its target (``_SUCCESS`` last) and hand the
outcome to the scheduler (dependents enqueued, a retry scheduled, or the dependents failed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import traceback
from typing import Any

from services.transform.chains.base import TaskContext, TaskRef
from services.transform.chains.capture import captured
from services.transform.chains.graph import Node, node_of
from services.transform.chains.scheduler import Scheduler
from services.transform.chains.state import QUEUED, RETRYABLE, RUNNING, resilient
from services.transform.chains.targets import read_output, write_log, write_target
from shared.logging import get_logger
from shared.messages import utc_now

log = get_logger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class LeaseLostError(RuntimeError):
    """Another worker owns the task now (this worker's lease expired)."""


async def run_chain_job(ctx: dict[str, Any], type_name: str, chain: str, task: str, params_json: str) -> str:
    """arq job: run one chain task whose requirements are built; return what happened."""
    wiring = ctx["wiring"]
    # The worker's own connection retries through a Redis restart; the chain state goes through it too.
    scheduler = Scheduler.of(settings=wiring.settings, redis=ctx["redis"], aws=wiring.aws, arq=ctx["redis"])
    return await run_task(scheduler, TaskRef(type_name, chain, task, params_json), job_id=ctx["job_id"])


async def run_task(scheduler: Scheduler, ref: TaskRef, *, job_id: str) -> str:
    """Claim and run ``ref`` under ``job_id``; return DONE, RETRYABLE, FAILED or why it did not run."""
    target = ref.prefix
    node = node_of(scheduler.chains, ref)
    if await scheduler.complete(target):
        await scheduler.done(target)
        return "DONE"
    lease_s = scheduler.settings.chain_lease_s
    now = time.time()
    attempt = await resilient(
        lambda: scheduler.store.transition(
            target,
            (QUEUED, RETRYABLE),
            {
                "state": RUNNING,
                "lease_until": now + lease_s,
                "started_at": now,
                "finished_at": "",
                "worker": WORKER_ID,
                "error": "",
                "traceback": "",
            },
            owner=job_id,
            new_attempt=True,
        )
    )
    if attempt is None:
        return "skipped: not queued for this job"
    context = TaskContext(settings=scheduler.settings, aws=scheduler.aws, target=target, attempt=attempt)
    context.log(f"{utc_now().isoformat()} attempt {attempt} of {target} on {WORKER_ID} (job {job_id})")
    work = asyncio.create_task(_execute(scheduler, node, context))
    beat = asyncio.create_task(_heartbeat(scheduler, target, job_id, lease_s, work))
    try:
        output = await work
    except asyncio.CancelledError:
        if beat.done() and isinstance(beat.exception(), LeaseLostError):
            log.warning("chain_lease_lost", target=target, job_id=job_id)
            return "lease lost"
        # arq cancelled the job (its timeout, or the worker stopping): give the task back as a failed attempt.
        with contextlib.suppress(Exception):
            await asyncio.shield(
                _fail(scheduler, node, context, job_id, "cancelled: the worker stopped the job", crashed=True)
            )
        raise
    except Exception as exc:
        if isinstance(exc, TimeoutError):
            error = f"TimeoutError: {node.cls.__name__} ran longer than its timeout of {node.cls.timeout_s:g}s"
        else:
            error = f"{type(exc).__name__}: {exc}"
        context.log(traceback.format_exc())
        return await _fail(scheduler, node, context, job_id, error, traceback.format_exc())
    finally:
        beat.cancel()
        with contextlib.suppress(BaseException):
            await beat
    context.log(f"{utc_now().isoformat()} done, {len(output)} bytes")
    s3 = await scheduler.aws.get("s3")
    await write_target(s3, scheduler.settings, ref, node.cls.extension, output, "".join(context.lines))
    await resilient(lambda: scheduler.done(target))
    log.info("chain_task_done", target=target, attempt=attempt)
    return "DONE"


async def _execute(scheduler: Scheduler, node: Node, context: TaskContext) -> bytes:
    s3 = await scheduler.aws.get("s3")
    inputs = []
    for requirement in node.requires:
        extension = node_of(scheduler.chains, requirement).cls.extension
        inputs.append(await read_output(s3, scheduler.settings, requirement, extension))
    with captured(context.lines):
        return await asyncio.wait_for(node.cls().run(context, node.params, inputs), timeout=node.cls.timeout_s)


async def _heartbeat(scheduler: Scheduler, target: str, job_id: str, lease_s: float, work: asyncio.Task[Any]) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        try:
            won = await scheduler.store.transition(
                target, (RUNNING,), {"lease_until": time.time() + lease_s}, owner=job_id
            )
        except Exception as exc:  # Redis away for a moment: keep running, the lease still covers us
            log.warning("chain_heartbeat_failed", target=target, error=str(exc))
            continue
        if won is None:
            work.cancel()
            raise LeaseLostError(target)


async def _fail(
    scheduler: Scheduler,
    node: Node,
    context: TaskContext,
    job_id: str,
    error: str,
    trace: str = "",
    *,
    crashed: bool = False,
) -> str:
    target = node.ref.prefix
    log.warning("chain_task_failed", target=target, error=error)
    s3 = await scheduler.aws.get("s3")
    await write_log(s3, scheduler.settings, node.ref, "".join(context.lines))
    won = await resilient(
        lambda: scheduler.store.transition(
            target,
            (RUNNING,),
            {"state": RETRYABLE, "error": error[:4000], "traceback": trace[-20000:], "finished_at": time.time()},
            owner=job_id,
        )
    )
    if won is None:
        return "lease lost"
    return await resilient(
        lambda: scheduler.failed_attempt(
            target, retries=node.cls.retries, retry_delay_s=node.cls.retry_delay_s, crashed=crashed
        )
    )
