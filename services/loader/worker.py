"""The loader's arq worker: SQS consumers (S3 events, load requests, notifications), load jobs, cron jobs.

Run with ``python -m arq services.loader.worker.WorkerSettings``. Tests build a Worker from
``worker_options(settings)`` instead, so one process can run it beside the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from arq import Retry, cron
from arq.worker import func

from services.loader import loading, notify, scanner
from services.loader.models import RunState
from services.loader.runtime import Runtime
from services.loader.s3io import is_transient
from services.loader.settings import LoaderSettings
from shared.logging import configure_logging, get_logger
from shared.messages import LoadRequest, Notification, parse_message
from shared.queues import consume_queue
from shared.redis import arq_redis_settings

log = get_logger(__name__)


async def startup(ctx: dict[str, Any]) -> None:
    """Open the clients and start the SQS consumers."""
    settings: LoaderSettings = ctx.get("settings") or LoaderSettings()
    ctx["settings"] = settings
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    rt = Runtime.open(settings, arq=ctx["redis"])
    ctx["runtime"] = rt
    stop = asyncio.Event()
    ctx["stop"] = stop
    sqs = await rt.aws.get("sqs")

    async def _on_s3_event(message: dict[str, Any]) -> None:
        await scanner.handle_s3_event(rt, message["Body"])

    async def _on_load_message(message: dict[str, Any]) -> None:
        await loading.handle_load_queue_message(rt, message)

    async def _on_notification(message: dict[str, Any]) -> None:
        envelope = parse_message(message["Body"])
        if isinstance(envelope, Notification):
            await notify.queue_notification(
                rt.arq,
                settings,
                job_id=None,
                job_name=envelope.subject,
                kind="notice",
                dt=None,
                detail=envelope.body,
                recipients=envelope.recipients,
            )

    ctx["consumers"] = [
        asyncio.create_task(consume_queue(sqs, settings.queue(name), handler, stop=stop, wait_seconds=1))
        for name, handler in (
            ("s3-events", _on_s3_event),
            ("load-requests", _on_load_message),
            ("notifications", _on_notification),
        )
    ]
    log.info("loader_worker_started", queue=settings.arq_queue)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Stop the consumers and close the clients."""
    stop: asyncio.Event | None = ctx.get("stop")
    if stop is not None:
        stop.set()
    consumers: list[asyncio.Task[None]] = ctx.get("consumers", [])
    if consumers:
        _, pending = await asyncio.wait(consumers, timeout=5)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    rt: Runtime | None = ctx.get("runtime")
    if rt is not None:
        await rt.close()


async def load_run(ctx: dict[str, Any], run_id: int, request_json: str) -> str:
    """Load one date; transient errors retry with backoff, others count as a failed attempt."""
    rt: Runtime = ctx["runtime"]
    request = LoadRequest.model_validate_json(request_json)
    found = await loading.current(rt, run_id)
    if found is None:
        return "gone"
    run, job = found
    if run.state != RunState.LOADING or run.transform_id != request.transform_id:
        return f"skipped ({run.state})"
    try:
        rows = await loading.perform_load(rt, job, request)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        tries = int(ctx.get("job_try", 1))
        if is_transient(exc) and tries < rt.settings.load_max_tries:
            await loading.note_transient(rt, run, error, tries)
            raise Retry(
                defer=min(rt.settings.retry_backoff_max_s, rt.settings.retry_backoff_s * 2 ** (tries - 1))
            ) from exc
        log.exception("load_failed", job_id=job.id, run_id=run.id, error=error[:300])
        await loading.record_failure(rt, run, job, f"load failed: {error}")
        return "failed"
    await loading.mark_loaded(rt, run, job, rows)
    return f"loaded {rows}"


async def scan_jobs(ctx: dict[str, Any]) -> int:
    """Cron: scan every active job."""
    return await scanner.scan_all(ctx["runtime"])


async def scan_one(ctx: dict[str, Any], job_id: int) -> int:
    """Scan one job now (enqueued by the API when a job is created)."""
    rt: Runtime = ctx["runtime"]
    for job in await scanner.active_jobs(rt):
        if job.id == job_id:
            return await scanner.scan_job(rt, job)
    return 0


async def flush_mail(ctx: dict[str, Any]) -> int:
    """Cron: send the queued notifications."""
    return await notify.flush_notifications(ctx["redis"], ctx["settings"])


def _every(seconds: int) -> set[int]:
    step = max(1, min(60, seconds))
    return set(range(0, 60, step))


def worker_options(settings: LoaderSettings) -> dict[str, Any]:
    """Return the arq Worker keyword arguments for ``settings``."""
    from services.loader.retention import apply_retention_all

    async def retention(ctx: dict[str, Any]) -> int:
        return await apply_retention_all(ctx["runtime"])

    retention.__qualname__ = "retention"
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


_settings = LoaderSettings()
_options = worker_options(_settings)


class WorkerSettings:
    """arq entry point: ``arq services.loader.worker.WorkerSettings``."""

    functions = _options["functions"]
    cron_jobs = _options["cron_jobs"]
    on_startup = _options["on_startup"]
    on_shutdown = _options["on_shutdown"]
    queue_name = _options["queue_name"]
    redis_settings = _options["redis_settings"]
    ctx = _options["ctx"]
    max_jobs = 4
