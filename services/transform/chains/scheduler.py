"""Schedule chain tasks: submit a root, enqueue one arq job per task once its requirements are built, fail the
dependents of a failed task, schedule retries with backoff, and sweep orphans (expired leases, lost jobs).

Resubmitting a root walks its graph again: complete targets (``_SUCCESS``) are DONE and never rebuilt, active
tasks are left alone, and every other task (failed, unknown) starts over, so a fixed chain resumes at the
failed task.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from services.transform.chains.base import Chain, TaskRef, discover_chains
from services.transform.chains.graph import Node, expand, node_of, parse_target
from services.transform.chains.state import (
    ACTIVE,
    DONE,
    FAILED,
    PENDING,
    QUEUED,
    RETRYABLE,
    RUNNING,
    WAITING,
    ChainStore,
    TaskRecord,
)
from services.transform.chains.targets import is_complete
from services.transform.settings import TransformSettings
from shared.logging import get_logger

log = get_logger(__name__)

CHAIN_JOB = "run_chain_task"
JOB_KEY_PREFIX = "arq:job:"
IN_PROGRESS_KEY_PREFIX = "arq:in-progress:"
NOT_DONE = (*ACTIVE, PENDING, FAILED)
LOST_JOB_GRACE_S = 5.0  # a QUEUED task whose arq job is gone this long after enqueueing is enqueued again


@dataclass
class Scheduler:
    """Chain scheduling over the store, the chains bucket and the arq queue."""

    settings: TransformSettings
    store: ChainStore
    aws: Any
    arq: Any
    chains: dict[str, dict[str, Chain]]

    @classmethod
    def of(cls, *, settings: TransformSettings, redis: Any, aws: Any, arq: Any) -> Scheduler:
        """Build a scheduler from the wiring's clients."""
        return cls(settings, ChainStore(redis, settings), aws, arq, discover_chains())

    async def complete(self, target: str) -> bool:
        """Return True when a target's ``_SUCCESS`` exists."""
        return await is_complete(await self.aws.get("s3"), self.settings, target)

    # -- submitting ----------------------------------------------------------------------------------

    async def submit(self, root: TaskRef) -> str:
        """Record a run of ``root`` and schedule every task below it whose target is missing; return the run id."""
        nodes = expand(root, self.chains)
        run_id = uuid.uuid4().hex[:16]
        now = time.time()
        await self.store.redis.hset(
            self.store.run_key(run_id),
            mapping={
                "id": run_id,
                "root": root.prefix,
                "type": root.type,
                "chain": root.chain,
                "task": root.task,
                "params": root.params_json,
                "created_at": now,
            },
        )
        await self.store.redis.zadd(self.store.runs_key, {run_id: now})
        for node in nodes:  # requirements first
            await self.ensure(node)
        log.info("chain_submitted", run_id=run_id, root=root.prefix, tasks=len(nodes))
        return run_id

    async def ensure(self, node: Node, *, restart: bool = False) -> None:
        """Make sure a task is built or on its way: DONE if complete, else (re)started unless active."""
        target = node.ref.prefix
        if await self.complete(target):
            await self.store.transition(target, NOT_DONE, {"state": DONE})
            return
        await self.store.register(
            target,
            static={
                "type": node.ref.type,
                "chain": node.ref.chain,
                "task": node.ref.task,
                "params": node.ref.params_json,
            },
            requires=[r.prefix for r in node.requires],
        )
        if await self.expire_lease(target):
            await self.failed_attempt(
                target, retries=node.cls.retries, retry_delay_s=node.cls.retry_delay_s, crashed=True
            )
        restartable = (PENDING, FAILED, DONE, RETRYABLE) if restart else (PENDING, FAILED, DONE)
        await self.store.transition(
            target,
            restartable,
            {"state": WAITING, "error": "", "cause": "", "traceback": "", "owner": "", "finished_at": ""},
            reset_attempts=True,
        )
        await self.promote(target)

    async def promote(self, target: str) -> None:
        """Enqueue a WAITING task whose requirements are all built; fail it when one of them failed."""
        record = await self.store.get(target)
        if record.state != WAITING:
            return
        for requirement in record.requires:
            if await self.complete(requirement):
                continue
            required = await self.store.get(requirement)
            if required.state == FAILED:
                await self.fail_dependent(target, requirement)
            return
        await self.enqueue(record, from_states=(WAITING,))

    async def enqueue(self, record: TaskRecord, *, from_states: tuple[str, ...], defer_s: float = 0.0) -> bool:
        """Move a task to QUEUED (compare-and-set) and enqueue its one arq job; return False if another did."""
        job_id = f"chain:{record.target}:{uuid.uuid4().hex[:8]}"
        won = await self.store.transition(
            record.target,
            from_states,
            {
                "state": QUEUED if not defer_s else RETRYABLE,
                "job_id": job_id,
                "owner": job_id,  # only this job may claim the task: a stale or duplicate job finds it taken
                "queued_at": time.time() + defer_s,
            },
        )
        if won is None:
            return False
        fields = record.fields
        await self.arq.enqueue_job(
            CHAIN_JOB,
            fields["type"],
            fields["chain"],
            fields["task"],
            fields["params"],
            _job_id=job_id,
            _queue_name=self.settings.arq_queue,
            _defer_by=defer_s or None,
        )
        return True

    # -- outcomes ------------------------------------------------------------------------------------

    async def done(self, target: str) -> None:
        """Mark a complete target DONE and enqueue the dependents that were waiting on it."""
        await self.store.transition(target, NOT_DONE, {"state": DONE, "finished_at": time.time()})
        for dependent in await self.store.dependents(target):
            await self.promote(dependent)

    async def failed_attempt(self, target: str, *, retries: int, retry_delay_s: float, crashed: bool = False) -> str:
        """After a failed attempt (state RETRYABLE): schedule the next one with backoff, or fail for good.

        An attempt whose worker died (``crashed``) is not the task's fault: it gets one attempt beyond the class's
        retries, so a crash is survived even with ``retries = 0`` but a task that kills every worker still stops.
        """
        record = await self.store.get(target)
        if record.state != RETRYABLE:
            return record.state
        if record.attempts > retries + (1 if crashed else 0):
            await self.store.transition(target, (RETRYABLE,), {"state": FAILED, "finished_at": time.time()})
            await self.fail_dependents(target)
            return FAILED
        # Exponential backoff with jitter, so that retries of many tasks do not arrive together.
        delay = retry_delay_s * 2 ** (record.attempts - 1) * random.uniform(0.75, 1.25)
        await self.enqueue(record, from_states=(RETRYABLE,), defer_s=max(delay, 0.01))
        return RETRYABLE

    async def fail_dependent(self, target: str, requirement: str) -> None:
        """Fail a waiting task because ``requirement`` failed, naming it, and its own dependents in turn."""
        _, _, task, _ = parse_target(requirement)
        reason = f"requirement {task} failed ({requirement})"
        won = await self.store.transition(
            target, (WAITING,), {"state": FAILED, "error": reason, "cause": requirement, "finished_at": time.time()}
        )
        if won is not None:
            await self.fail_dependents(target)

    async def fail_dependents(self, target: str) -> None:
        """Fail every task waiting on a failed ``target``."""
        for dependent in await self.store.dependents(target):
            await self.fail_dependent(dependent, target)

    # -- retry and sweep -----------------------------------------------------------------------------

    async def retry(self, target: str) -> list[str]:
        """Start a failed task again, with its dependents that failed because of it; return the targets reset."""
        reset: list[str] = []

        async def _reset(current: str) -> None:
            record = await self.store.get(current)
            if record.state != FAILED or current in reset:
                return
            reset.append(current)
            if current != target:
                await self.store.transition(
                    current, (FAILED,), {"state": WAITING, "error": "", "cause": ""}, reset_attempts=True
                )
            for dependent in await self.store.dependents(current):
                await _reset(dependent)

        await _reset(target)
        record = await self.store.get(target)
        if record.state == PENDING:
            return []
        await self.ensure(node_of(self.chains, _ref_of(record)))
        return reset

    async def expire_lease(self, target: str) -> bool:
        """Turn a RUNNING task whose lease expired into a failed attempt (RETRYABLE); return True if it was."""
        now = time.time()
        record = await self.store.get(target)
        won = await self.store.transition(
            target,
            (RUNNING,),
            {
                "state": RETRYABLE,
                "error": f"lease expired: worker {record.fields.get('owner', '?')} stopped heartbeating",
                "owner": "",
            },
            lease_before=now,
        )
        return won is not None

    async def sweep(self) -> int:
        """Recover orphans: expired leases, lost arq jobs, waiting tasks whose requirements finished; return count."""
        recovered = 0
        members = sorted(m.decode() for m in await self.store.redis.smembers(self.store.active_key))
        for target in members:
            try:
                recovered += await self._sweep_one(target)
            except Exception as exc:  # one broken record must not stop the sweep of the others
                log.warning("chain_sweep_failed", target=target, error=str(exc))
        return recovered

    async def _sweep_one(self, target: str) -> int:
        record = await self.store.get(target)
        if record.state not in ACTIVE:
            await self.store.redis.srem(self.store.active_key, target)
            return 0
        if await self.complete(target):
            await self.done(target)
            return 1
        if record.state == WAITING:
            await self.promote(target)
            return 0
        node = node_of(self.chains, _ref_of(record))
        if record.state == RUNNING:
            if not await self.expire_lease(target):
                return 0
            log.warning("chain_lease_expired", target=target, owner=record.fields.get("owner"))
            await self.failed_attempt(
                target, retries=node.cls.retries, retry_delay_s=node.cls.retry_delay_s, crashed=True
            )
            return 1
        # QUEUED or RETRYABLE: its arq job must exist (queued, deferred or in progress), else it was lost.
        queued_at = record.number("queued_at") or 0.0
        job_id = record.fields.get("job_id", "")
        if time.time() < queued_at + LOST_JOB_GRACE_S or await self._job_exists(job_id):
            return 0
        log.warning("chain_job_lost", target=target, job_id=job_id)
        return int(await self.enqueue(record, from_states=(record.state,)))

    async def _job_exists(self, job_id: str) -> bool:
        if not job_id:
            return False
        keys = (f"{JOB_KEY_PREFIX}{job_id}", f"{IN_PROGRESS_KEY_PREFIX}{job_id}")
        return bool(await self.store.redis.exists(*keys))


def _ref_of(record: TaskRecord) -> TaskRef:
    fields = record.fields
    return TaskRef(fields["type"], fields["chain"], fields["task"], fields["params"])
