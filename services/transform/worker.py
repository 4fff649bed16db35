"""arq worker of the transform service: runs transform and chain jobs and consumes ``transform-requests`` from SQS.

Start with ``python -m arq services.transform.worker.WorkerSettings``; the settings are read when the worker
starts (``WorkerSettings`` is built on first access), not at import.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from arq import func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.transform.chains.runner import run_chain_job
from services.transform.chains.scheduler import CHAIN_JOB
from services.transform.chains.service import start_sweeper
from services.transform.consumer import start_request_consumer
from services.transform.run_store import RUN_JOB, requeue_unfinished_runs
from services.transform.settings import TransformSettings
from services.transform.transform_jobs import run_transform
from services.transform.wiring import TransformWiring, open_transform
from shared.logging import get_logger
from shared.redis import arq_redis_settings
from shared.wiring import lazy_worker_settings, worker_hooks

log = get_logger(__name__)

# The worker's own Redis connection is its job queue: the wiring opens no second pool.
_open_wiring, shutdown = worker_hooks(partial(open_transform, job_queue=False), TransformSettings)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the wiring, re-enqueue runs whose job was lost, and start the SQS consumer."""
    await _open_wiring(ctx)
    wiring: TransformWiring = ctx["wiring"]
    await requeue_unfinished_runs(sessions=wiring.sessions, arq=wiring.arq, settings=wiring.settings)
    start_sweeper(wiring, ctx["redis"])  # recovers chain tasks orphaned by a crash; stopped with the wiring
    if wiring.settings.consume_requests:
        start_request_consumer(wiring)  # stopped when the wiring closes (on_shutdown)
    log.info("transform_worker_started", queue=wiring.settings.arq_queue)


def worker_functions(settings: TransformSettings) -> list[Any]:
    """Return the arq functions with their timeouts and retry budgets."""
    return [
        # The run counts its own attempts (settings.max_tries); arq's budget only has to outlast lock waits.
        func(run_transform, name=RUN_JOB, timeout=settings.job_timeout_s, max_tries=10_000),
        # One job per chain task; the task class bounds its own attempt (timeout_s) and the scheduler its retries.
        func(run_chain_job, name=CHAIN_JOB, timeout=settings.job_timeout_s, max_tries=1),
    ]


def worker_redis_settings(settings: TransformSettings) -> RedisSettings:
    """Return arq's connection settings, retrying commands for ~20 s so a Redis restart does not kill the worker."""
    redis_settings = arq_redis_settings(settings)
    redis_settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, ConnectionError]
    redis_settings.retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), 40)
    return redis_settings


def build_worker_settings(settings: TransformSettings | None = None) -> type:
    """Return arq's WorkerSettings for ``settings`` (read from the environment when not given)."""
    settings = settings or TransformSettings()

    class WorkerSettings:
        """arq settings: same Settings as the app."""

        functions = worker_functions(settings)
        queue_name = settings.arq_queue
        redis_settings = worker_redis_settings(settings)
        ctx = {"settings": settings}
        on_startup = startup
        on_shutdown = shutdown
        max_jobs = 2
        keep_result = 3600

    return WorkerSettings


__getattr__ = lazy_worker_settings(build_worker_settings)
