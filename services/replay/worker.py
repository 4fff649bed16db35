"""arq worker of the replay service: runs replay jobs (resuming from their checkpoint after a crash)."""

from __future__ import annotations

from typing import Any, ClassVar

from arq import cron, func

from services.replay.jobs import RUN_FUNCTION, recover_orphans
from services.replay.progress import ProgressStore
from services.replay.pump import run_replay
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.db import create_engine, session_factory
from shared.logging import configure_logging, get_logger
from shared.redis import arq_redis_settings, open_redis

settings = ReplaySettings()
log = get_logger(__name__)


async def run_replay_job(ctx: dict[str, Any], job_id: str) -> str:
    """Run or resume one replay job."""
    return await run_replay(
        job_id=job_id, settings=ctx["settings"], aws=ctx["aws"], store=ctx["store"], sessions=ctx["sessions"]
    )


async def recover_replays(ctx: dict[str, Any]) -> list[str]:
    """Re-enqueue replay jobs whose worker died mid-run."""
    async with ctx["sessions"]() as session:
        recovered = await recover_orphans(
            session=session, store=ctx["store"], arq=ctx["redis"], settings=ctx["settings"]
        )
    if recovered:
        log.warning("replays_recovered", replay_ids=recovered)
    return recovered


async def startup(ctx: dict[str, Any]) -> None:
    """Open the clients the jobs use."""
    current: ReplaySettings = ctx.get("settings") or settings
    configure_logging(current.service_name, current.log_level, current.log_json)
    ctx["settings"] = current
    ctx["aws"] = AwsClients(current)
    ctx["redis_client"] = open_redis(current)
    ctx["store"] = ProgressStore(ctx["redis_client"], current.resource_prefix)
    ctx["engine"] = create_engine(current)
    ctx["sessions"] = session_factory(ctx["engine"])


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the clients."""
    await ctx["aws"].close()
    await ctx["redis_client"].aclose()
    await ctx["engine"].dispose()


def worker_functions(current: ReplaySettings) -> list[Any]:
    """Return the arq functions of this worker."""
    return [func(run_replay_job, name=RUN_FUNCTION, timeout=current.job_timeout_s, max_tries=5)]


def worker_cron_jobs(current: ReplaySettings) -> list[Any]:
    """Return the recovery cron: every ``recovery_interval_s`` seconds and once at start-up."""
    seconds = set(range(0, 60, max(1, min(60, current.recovery_interval_s))))
    return [cron(recover_replays, second=seconds, run_at_startup=True, unique=True, timeout=60)]


class WorkerSettings:
    """``python -m arq services.replay.worker.WorkerSettings``."""

    functions: ClassVar[list[Any]] = worker_functions(settings)
    cron_jobs: ClassVar[list[Any]] = worker_cron_jobs(settings)
    queue_name = settings.arq_queue
    redis_settings = arq_redis_settings(settings)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 4
