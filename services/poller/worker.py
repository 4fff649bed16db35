"""arq worker of the poller: runs the polling loop (started on start-up) and the hourly log rotation cron."""

from __future__ import annotations

from typing import Any

from arq import Retry, cron

from services.poller.replica import build_replica, rotate_logs_once
from services.poller.settings import PollerSettings
from shared.logging import configure_logging, get_logger
from shared.redis import arq_redis_settings

log = get_logger(__name__)
settings = PollerSettings()


async def rotate_logs(ctx: dict[str, Any]) -> dict[str, int]:
    """Upload the closed hours' logs to S3, verified, and delete them locally; retry failed uploads."""
    report = await rotate_logs_once(ctx["replica"])
    if report.failed and ctx.get("job_try", 1) < 5:
        raise Retry(defer=60 * ctx.get("job_try", 1))
    return {"uploaded": len(report.uploaded), "failed": len(report.failed)}


async def startup(ctx: dict[str, Any]) -> None:
    """Build the clients from settings and start polling."""
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    replica = build_replica(settings)
    ctx["replica"] = replica
    await replica.poller.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    """Stop polling (in-flight polls finish, leases are released) and close the clients."""
    replica = ctx.get("replica")
    if replica is not None:
        await replica.close()


class WorkerSettings:
    """arq settings: the polling loop lives in ``on_startup``; rotation runs a minute past every hour."""

    queue_name = settings.arq_queue
    redis_settings = arq_redis_settings(settings)
    functions = [rotate_logs]
    cron_jobs = [cron(rotate_logs, minute={1, 31}, second=30, timeout=1800, max_tries=5)]
    on_startup = startup
    on_shutdown = shutdown
    max_tries = 5
