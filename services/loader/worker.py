"""The loader's arq worker: SQS consumers (S3 events, load requests), load jobs, cron jobs.

Run with ``python -m arq services.loader.worker.WorkerSettings``; the settings are read when the worker starts
(``WorkerSettings`` is built on first access), not at import. Tests build a Worker from
``worker_options(settings)`` instead, so one process can run it beside the app.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from arq import Retry, cron
from arq.worker import func

from services.loader import loading, notify, scanner
from services.loader.consumers import start_consumers
from services.loader.models import RunState
from services.loader.retention import apply_retention_all
from services.loader.settings import LoaderSettings
from services.loader.wiring import LoaderWiring, open_loader
from shared.logging import get_logger
from shared.messages import LoadRequest
from shared.redis import arq_redis_settings
from shared.retry import is_transient
from shared.wiring import lazy_worker_settings, worker_hooks

log = get_logger(__name__)

# The worker's own Redis connection is its job queue: the wiring opens no second pool.
_open_wiring, shutdown = worker_hooks(partial(open_loader, job_queue=False), LoaderSettings)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the wiring and start the SQS consumers (stopped when the wiring closes)."""
    await _open_wiring(ctx)
    wiring: LoaderWiring = ctx["wiring"]
    await start_consumers(wiring)
    log.info("loader_worker_started", queue=wiring.settings.arq_queue)


async def load_run(ctx: dict[str, Any], run_id: int, request_json: str) -> str:
    """Load one date; transient errors retry with backoff, others count as a failed attempt."""
    wiring: LoaderWiring = ctx["wiring"]
    settings = wiring.settings
    request = LoadRequest.model_validate_json(request_json)
    found = await loading.current(wiring, run_id)
    if found is None:
        return "gone"
    run, job = found
    if run.state != RunState.LOADING or run.transform_id != request.transform_id:
        return f"skipped ({run.state})"
    try:
        rows = await loading.perform_load(wiring, job, request)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        tries = int(ctx.get("job_try", 1))
        # The manifest and the parts it names may not be readable yet (read-after-write): retry those too.
        if is_transient(exc, missing_is_transient=True) and tries < settings.load_max_tries:
            await loading.note_transient(wiring, run, error, tries)
            raise Retry(defer=min(settings.retry_backoff_max_s, settings.retry_backoff_s * 2 ** (tries - 1))) from exc
        log.exception("load_failed", job_id=job.id, run_id=run.id, error=error[:300])
        await loading.record_failure(wiring, run, job, f"load failed: {error}")
        return "failed"
    await loading.mark_loaded(wiring, run, job, rows)
    return f"loaded {rows}"


async def scan_jobs(ctx: dict[str, Any]) -> int:
    """Cron: scan every active job."""
    return await scanner.scan_all(ctx["wiring"])


async def scan_one(ctx: dict[str, Any], job_id: int) -> int:
    """Scan one job now (enqueued by the API when a job is created or resumed)."""
    wiring: LoaderWiring = ctx["wiring"]
    for job in await scanner.active_jobs(wiring):
        if job.id == job_id:
            return await scanner.scan_job(wiring, job)
    return 0


async def flush_mail(ctx: dict[str, Any]) -> int:
    """Cron: send the queued notifications."""
    wiring: LoaderWiring = ctx["wiring"]
    return await notify.flush_notifications(wiring.redis, wiring.settings)


async def retention(ctx: dict[str, Any]) -> int:
    """Cron: apply every job's retention."""
    return await apply_retention_all(ctx["wiring"])


def _every(seconds: int) -> set[int]:
    step = max(1, min(60, seconds))
    return set(range(0, 60, step))


def worker_options(settings: LoaderSettings) -> dict[str, Any]:
    """Return the arq Worker keyword arguments for ``settings``."""
    minutes = set(range(0, 60, max(1, min(60, settings.retention_interval_min))))
    return {
        "functions": [
            func(load_run, name="load_run", max_tries=settings.load_max_tries, timeout=settings.load_timeout_s),
            func(scan_one, name="scan_one", timeout=300),
        ],
        "cron_jobs": [
            cron(
                scan_jobs, name="scan_jobs", second=_every(settings.scan_interval_s), run_at_startup=True, timeout=300
            ),
            cron(flush_mail, name="flush_mail", second=_every(settings.notify_flush_s), timeout=120),
            cron(retention, name="retention", minute=minutes, second=0, timeout=1800),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "queue_name": settings.arq_queue,
        "redis_settings": arq_redis_settings(settings),
        "ctx": {"settings": settings},
        "max_jobs": 4,
        "handle_signals": False,
    }


def build_worker_settings(settings: LoaderSettings | None = None) -> type:
    """Return arq's WorkerSettings for ``settings`` (read from the environment when not given)."""
    options = worker_options(settings or LoaderSettings())
    options.pop("handle_signals")  # the arq CLI handles SIGTERM/SIGINT itself

    return type("WorkerSettings", (), {"__doc__": "arq settings: same Settings as the app.", **options})


__getattr__ = lazy_worker_settings(build_worker_settings)
