"""arq worker of the poller: polls from start-up to shutdown and rotates the hourly logs by cron.

Run with ``arq services.poller.worker.WorkerSettings``; the settings are read when the worker starts
(``WorkerSettings`` is built on first access), not at import.
"""

from __future__ import annotations

from typing import Any

from arq import Retry, cron

from services.poller.settings import PollerSettings
from services.poller.wiring import PollerWiring, open_poller
from shared.logging import get_logger
from shared.redis import arq_redis_settings
from shared.wiring import lazy_worker_settings, worker_hooks

log = get_logger(__name__)

ROTATION_TRIES = 5

_open_wiring, shutdown = worker_hooks(open_poller, PollerSettings)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the wiring and start polling (the loop stops, leases released, when the wiring closes)."""
    await _open_wiring(ctx)
    wiring: PollerWiring = ctx["wiring"]
    await wiring.start_polling()


async def rotate_logs(ctx: dict[str, Any]) -> dict[str, int]:
    """Upload the closed hours' logs to S3, verified, and delete them locally; retry transient failures soon."""
    wiring: PollerWiring = ctx["wiring"]
    report = await wiring.rotate_logs()
    tries = int(ctx.get("job_try", 1))
    if report.transient and tries < ROTATION_TRIES:
        raise Retry(defer=60 * tries)
    if report.failed:
        # Not worth retrying now (or out of tries): the files stay on disk for the next run.
        log.warning("log_rotation_incomplete", failed=len(report.failed), tries=tries)
    return {"uploaded": len(report.uploaded), "failed": len(report.failed)}


def worker_options(settings: PollerSettings) -> dict[str, Any]:
    """Return the arq Worker keyword arguments for ``settings`` (rotation runs twice an hour)."""
    return {
        "functions": [rotate_logs],
        "cron_jobs": [cron(rotate_logs, minute={1, 31}, second=30, timeout=1800, max_tries=ROTATION_TRIES)],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "queue_name": settings.arq_queue,
        "redis_settings": arq_redis_settings(settings),
        "ctx": {"settings": settings},
        "max_tries": ROTATION_TRIES,
    }


def build_worker_settings(settings: PollerSettings | None = None) -> type:
    """Return arq's WorkerSettings for ``settings`` (read from the environment when not given)."""
    options = worker_options(settings or PollerSettings())
    return type("WorkerSettings", (), {"__doc__": "arq settings of the poller worker.", **options})


__getattr__ = lazy_worker_settings(build_worker_settings)
