"""arq worker of the replay service: runs replay jobs (resuming from their checkpoint after a crash).

Run with ``python -m arq services.replay.worker.WorkerSettings``; the settings are read when the worker starts
(``WorkerSettings`` is built on first access), not at import. Tests build a Worker from ``worker_functions`` and
the ``startup``/``shutdown`` hooks with their own settings in ``ctx``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from arq import Retry, cron, func

from services.replay.jobs import RUN_FUNCTION, recover_orphans
from services.replay.pump import run_replay
from services.replay.settings import ReplaySettings
from services.replay.wiring import ReplayWiring, open_replay
from shared.logging import get_logger
from shared.redis import arq_redis_settings
from shared.retry import TransientError
from shared.wiring import lazy_worker_settings, worker_hooks

log = get_logger(__name__)

# The worker's own Redis connection is its job queue: the wiring opens no second pool.
startup, shutdown = worker_hooks(partial(open_replay, job_queue=False), ReplaySettings)


async def run_replay_job(ctx: dict[str, Any], job_id: str) -> str:
    """Run or resume one replay job; a transient failure retries it with backoff."""
    wiring: ReplayWiring = ctx["wiring"]
    settings = wiring.settings
    tries = int(ctx.get("job_try", 1))
    try:
        return await run_replay(
            job_id=job_id,
            settings=settings,
            aws=wiring.aws,
            store=wiring.progress,
            sessions=wiring.sessions,
            retry_transient=tries < settings.job_max_tries,
        )
    except TransientError as exc:
        raise Retry(defer=min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (tries - 1))) from exc


async def recover_replays(ctx: dict[str, Any]) -> list[str]:
    """Re-enqueue replay jobs whose worker died mid-run."""
    wiring: ReplayWiring = ctx["wiring"]
    async with wiring.sessions() as session:
        recovered = await recover_orphans(
            session=session, store=wiring.progress, arq=ctx["redis"], settings=wiring.settings
        )
    if recovered:
        log.warning("replays_recovered", replay_ids=recovered)
    return recovered


def worker_functions(settings: ReplaySettings) -> list[Any]:
    """Return the arq functions of this worker."""
    return [func(run_replay_job, name=RUN_FUNCTION, timeout=settings.job_timeout_s, max_tries=settings.job_max_tries)]


def worker_cron_jobs(settings: ReplaySettings) -> list[Any]:
    """Return the recovery cron: every ``recovery_interval_s`` seconds and once at start-up."""
    seconds = set(range(0, 60, max(1, min(60, settings.recovery_interval_s))))
    return [cron(recover_replays, second=seconds, run_at_startup=True, unique=True, timeout=60)]


def build_worker_settings(settings: ReplaySettings | None = None) -> type:
    """Return arq's WorkerSettings for ``settings`` (read from the environment when not given)."""
    settings = settings or ReplaySettings()
    options = {
        "functions": worker_functions(settings),
        "cron_jobs": worker_cron_jobs(settings),
        "queue_name": settings.arq_queue,
        "redis_settings": arq_redis_settings(settings),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings},
        "max_jobs": 4,
    }
    return type("WorkerSettings", (), {"__doc__": "arq settings: same Settings as the app.", **options})


__getattr__ = lazy_worker_settings(build_worker_settings)
