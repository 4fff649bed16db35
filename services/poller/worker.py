"""arq worker of the poller: polls from start-up to shutdown; each replica rotates its own hourly logs.

Every replica writes the logs of the devices it polls to its own disk (an emptyDir per pod), so rotation is a
task of each replica, not an arq cron on the queue they share (which would run on one replica, never touching the
others' files). The task uploads closed hours every ``rotate_every_s``; on shutdown, once polling stopped, the
replica uploads every hour it still holds, open ones included (uploads merge lines into an existing object, so an
hour polled by two replicas, or uploaded early and later again, holds each line once).

Run with ``python -m shared.worker_process run services.poller.worker.WorkerSettings``; the settings are read when
the worker starts (``WorkerSettings`` is built on first access), not at import.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry

from services.poller.rotation import rotate_closed_hours
from services.poller.settings import PollerSettings
from services.poller.wiring import PollerWiring, open_poller
from shared.logging import get_logger
from shared.redis import arq_redis_settings
from shared.wiring import lazy_worker_settings, worker_hooks

log = get_logger(__name__)

ROTATION_TRIES = 5
ROTATE_EVERY_S = 300.0

_open_wiring, _close_wiring = worker_hooks(open_poller, PollerSettings)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the wiring, start polling and this replica's rotation task."""
    await _open_wiring(ctx)
    wiring: PollerWiring = ctx["wiring"]
    await wiring.start_polling()
    every = float(ctx.get("rotate_every_s", ROTATE_EVERY_S))
    ctx["rotation_task"] = asyncio.create_task(_rotate_periodically(wiring, every), name="poller-rotation")


async def _rotate_periodically(wiring: PollerWiring, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await wiring.rotate_logs()
        except Exception as exc:  # the files stay on disk for the next pass
            log.warning("log_rotation_failed", error=type(exc).__name__)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Stop rotating and polling, upload every hour this replica holds (open ones too), then close the wiring."""
    task: asyncio.Task[None] | None = ctx.pop("rotation_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    wiring: PollerWiring | None = ctx.get("wiring")
    if wiring is not None:
        await wiring.poller.stop()  # no line is written after this: the hour files are final
        await upload_everything(wiring)
    await _close_wiring(ctx)


async def upload_everything(wiring: PollerWiring) -> None:
    """Upload every hour on this replica's disk, open hours included (the pod's disk goes away with it)."""
    settings = wiring.settings
    report = await rotate_closed_hours(
        s3=await wiring.aws.get("s3"),
        bucket=settings.bucket("logs"),
        log_dir=settings.logs_path,
        key_prefix=settings.logs_key_prefix,
        now=datetime.now(UTC) + timedelta(hours=2),  # every hour counts as closed
        grace_s=0.0,
    )
    if report.failed:
        log.warning("logs_left_on_shutdown", failed=len(report.failed))


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
    """Return the arq Worker keyword arguments for ``settings`` (rotation is each replica's task, not a cron)."""
    return {
        # Still enqueueable (e.g. by an operator) but no cron: it would rotate only the replica that took it.
        "functions": [rotate_logs],
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
