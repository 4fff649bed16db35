"""The scanner: find complete, unloaded days of active jobs and ask transform for them, in date order.

Days are discovered two ways: a periodic scan (arq cron) HEADs the day markers of dates with no run yet,
and S3 event notifications for markers start a day within seconds. Either way a date gets exactly one
run row (unique per job and date), and at most ``max_in_flight_per_job`` dates of a job are in flight.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError
from sqlmodel import col, select

from services.loader import runs as run_service
from services.loader.models import IN_FLIGHT, Job, JobRun, JobState, RunEvent, RunState, utc_now
from services.loader.templates import SourceTemplate
from services.loader.wiring import LoaderWiring
from shared.logging import get_logger
from shared.messages import TransformRequest
from shared.queues import send_message

log = get_logger(__name__)
_HEAD_CONCURRENCY = 16


def today_utc() -> date:
    """Return today's UTC date."""
    return datetime.now(UTC).date()


async def _marker_exists(s3: Any, template: SourceTemplate, day: date) -> bool:
    for key in template.marker_keys(day):
        try:
            await s3.head_object(Bucket=template.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    return False


def candidate_dates(job: Job, known: set[date], limit: int, after: date | None = None) -> list[date]:
    """Return up to ``limit`` dates of the job's range (to today) without a run.

    The window starts after ``after`` (the scan cursor) and wraps around to the start, so a long range
    with a gap of missing days is still covered, ``limit`` dates per scan. The last date returned is the
    next cursor.
    """
    last = min(job.end_date or today_utc(), today_utc())
    days = (job.start_date + timedelta(days=offset) for offset in range((last - job.start_date).days + 1))
    missing = [day for day in days if day not in known]
    if len(missing) <= limit or after is None:
        return missing[:limit]
    return ([day for day in missing if day > after] + [day for day in missing if day <= after])[:limit]


def _cursor_key(wiring: LoaderWiring, job_id: int) -> str:
    return f"loader:{wiring.settings.resource_prefix}:scan-cursor:{job_id}"


async def discover_days(wiring: LoaderWiring, job: Job) -> int:
    """HEAD the markers of the job's dates without runs; create waiting runs for complete ones."""
    assert job.id is not None
    async with wiring.sessions() as session:
        known = await run_service.run_dates(session, job.id)
    raw_cursor = await wiring.redis.get(_cursor_key(wiring, job.id))
    cursor = date.fromisoformat(raw_cursor.decode()) if raw_cursor else None
    candidates = candidate_dates(job, known, wiring.settings.scan_max_dates, cursor)
    if not candidates:
        return 0
    await wiring.redis.set(_cursor_key(wiring, job.id), candidates[-1].isoformat(), ex=7 * 86400)
    s3 = await wiring.aws.get("s3")
    template = job.template
    semaphore = asyncio.Semaphore(_HEAD_CONCURRENCY)

    async def _check(day: date) -> date | None:
        async with semaphore:
            return day if await _marker_exists(s3, template, day) else None

    found = [day for day in await asyncio.gather(*(_check(day) for day in candidates)) if day]
    if not found:
        return 0
    async with wiring.sessions() as session:
        return await run_service.ensure_runs(session, job.id, found)


async def _expire_stuck_runs(wiring: LoaderWiring, job: Job) -> None:
    """Count a transform with no answer, or a load never finished, past its timeout as a failed attempt."""
    now = utc_now()
    transform_cutoff = now - timedelta(seconds=wiring.settings.transform_timeout_s)
    load_cutoff = now - timedelta(seconds=wiring.settings.load_timeout_s * 1.5)
    async with wiring.sessions() as session:
        result = await session.exec(
            select(JobRun).where(
                JobRun.job_id == job.id,
                ((JobRun.state == RunState.TRANSFORMING) & (col(JobRun.transform_started_at) < transform_cutoff))
                | ((JobRun.state == RunState.LOADING) & (col(JobRun.load_started_at) < load_cutoff)),
            )
        )
        for run in result.all():
            reason = "transform did not answer in time" if run.state == RunState.TRANSFORMING else "load timed out"
            await run_service.fail_attempt(
                session,
                run,
                reason,
                max_attempts=wiring.settings.max_attempts,
                base_s=wiring.settings.retry_backoff_s,
                max_s=wiring.settings.retry_backoff_max_s,
            )


async def dispatch_job(wiring: LoaderWiring, job_id: int) -> int:
    """Send TransformRequests for the job's earliest due waiting dates, up to the in-flight limit."""
    async with wiring.dispatch_lock:
        async with wiring.sessions() as session:
            job = await session.get(Job, job_id)
            if job is None or job.state != JobState.ACTIVE:
                return 0
            free = wiring.settings.max_in_flight_per_job - await run_service.in_flight_count(session, job_id)
            due = await run_service.due_waiting_runs(session, job_id, free, utc_now())
            sent = 0
            sqs = await wiring.aws.get("sqs")
            template = job.template
            for run in due:
                assert run.id is not None
                claimed = await run_service.transition(
                    session,
                    run.id,
                    [RunState.WAITING],
                    RunState.TRANSFORMING,
                    attempts=run.attempts + 1,
                    transform_started_at=utc_now(),
                    next_attempt_at=None,
                )
                if not claimed:
                    continue
                request = TransformRequest(
                    job_id=job_id,
                    run_id=run.id,
                    table=job.schema_name,
                    schema_version=job.schema_version,
                    source_bucket=template.bucket,
                    source_prefix=template.prefix(run.dt),
                    dt=run.dt,
                    engine=job.engine,  # type: ignore[arg-type]
                )
                await send_message(sqs, wiring.settings.queue("transform-requests"), request)
                await run_service.log_event(
                    session, job_id=job_id, dt=run.dt, event="transform_requested", detail=f"attempt {run.attempts + 1}"
                )
                await session.commit()
                log.info("transform_requested", job_id=job_id, run_id=run.id, dt=run.dt.isoformat())
                sent += 1
            return sent


async def request_scan(wiring: LoaderWiring, job_id: int) -> None:
    """Ask the worker to scan the job now rather than at the next cron tick."""
    await wiring.jobs.enqueue_job("scan_one", job_id)


async def active_jobs(wiring: LoaderWiring, *, with_paused: bool = False) -> list[Job]:
    """Return every active job (and paused ones when asked)."""
    states = [JobState.ACTIVE, JobState.PAUSED] if with_paused else [JobState.ACTIVE]
    async with wiring.sessions() as session:
        result = await session.exec(select(Job).where(col(Job.state).in_(states)).order_by(col(Job.id)))
        return list(result.all())


async def scan_job(wiring: LoaderWiring, job: Job) -> int:
    """Discover the job's complete days and dispatch what is due; return requests sent."""
    assert job.id is not None
    await discover_days(wiring, job)
    await _expire_stuck_runs(wiring, job)
    return await dispatch_job(wiring, job.id)


async def scan_all(wiring: LoaderWiring) -> int:
    """Scan every active job (paused and cancelled jobs are skipped); return requests sent."""
    sent = 0
    for job in await active_jobs(wiring):
        try:
            sent += await scan_job(wiring, job)
        except Exception as exc:
            log.exception("scan_failed", job_id=job.id, error=str(exc))
    return sent


def marker_events(body: str) -> list[tuple[str, str, datetime | None]]:
    """Return (bucket, key, when the marker was written) for each marker an S3 event notification reports."""
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return []
    if isinstance(document, dict) and "Message" in document and isinstance(document["Message"], str):
        return marker_events(document["Message"])  # wrapped by SNS
    objects: list[tuple[str, str, datetime | None]] = []
    for record in document.get("Records", []) if isinstance(document, dict) else []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3", {})
        bucket = s3.get("bucket", {}).get("name")
        key = s3.get("object", {}).get("key")
        if bucket and key:
            objects.append((bucket, unquote_plus(key), _parse_time(record.get("eventTime"))))
    return objects


def _as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; the metadata DB stores UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _as_utc(parsed)


async def handle_s3_event(wiring: LoaderWiring, body: str) -> int:
    """Start the days whose markers an S3 notification reports; return requests sent.

    A paused job records the days as waiting (they show on its calendar) but starts none. A marker rewritten
    after its date was loaded means late events arrived for that day: the date is loaded again (transform
    replaces the partition and the warehouse replaces the date, so the reload is exact).
    """
    events = marker_events(body)
    if not events:
        return 0
    sent = 0
    for job in await active_jobs(wiring, with_paused=True):
        assert job.id is not None
        template = job.template
        last = job.end_date or today_utc()
        written: dict[date, datetime | None] = {}
        for bucket, key, when in events:
            day = template.match_marker(bucket, key)
            if day and job.start_date <= day <= last:
                written[day] = when
        if not written:
            continue
        async with wiring.sessions() as session:
            await run_service.ensure_runs(session, job.id, written.keys())
            await reload_late_days(session, job.id, written)
        sent += await dispatch_job(wiring, job.id)
    return sent


# History entry for a marker rewritten while its day was in flight: the load that ends next reloads the day.
LATE_MARKER = "late_marker"


def read_started(run: JobRun) -> datetime | None:
    """When transform began reading the day's raw objects (the load's finish for runs from before that field)."""
    return _as_utc(run.transform_started_at) or _as_utc(run.finished_at)


async def reload_late_days(session: Any, job_id: int, written: dict[date, datetime | None]) -> int:
    """Act on markers rewritten after their day's raw data was read (late events); return days sent back.

    A loaded day goes back to waiting. A day in flight is noted (``late_marker``) and reloaded when its load
    ends (``reload_if_late``): its transform may have read the raw data before the late events landed. A marker
    older than the read (a redelivered S3 event, or the marker that started the day) changes nothing.
    """
    result = await session.exec(
        select(JobRun).where(
            JobRun.job_id == job_id,
            col(JobRun.state).in_([RunState.LOADED, *IN_FLIGHT]),
            col(JobRun.dt).in_(list(written)),
        )
    )
    reloaded = 0
    for run in result.all():
        when, started = written[run.dt], read_started(run)
        if when is None or started is None or when <= started:
            continue
        assert run.id is not None
        if run.state != RunState.LOADED:
            await run_service.log_event(
                session, job_id=job_id, dt=run.dt, event=LATE_MARKER, detail=f"marker rewritten at {when.isoformat()}"
            )
            await session.commit()
            log.info("late_marker_in_flight", job_id=job_id, dt=run.dt.isoformat(), state=run.state)
        elif await _send_back(session, run, "day marker rewritten: late events"):
            reloaded += 1
    return reloaded


async def _send_back(session: Any, run: JobRun, why: str) -> bool:
    """Move a loaded day back to waiting so it is transformed and loaded again; return whether it moved."""
    assert run.id is not None
    if not await run_service.transition(session, run.id, [RunState.LOADED], RunState.WAITING, attempts=0):
        return False
    await run_service.log_event(session, job_id=run.job_id, dt=run.dt, event="reload", detail=why)
    await session.commit()
    log.info("late_day_reload", job_id=run.job_id, dt=run.dt.isoformat())
    return True


async def reload_if_late(session: Any, run_id: int) -> bool:
    """Send a just-loaded day back to waiting if its marker was rewritten after its raw data was read."""
    run = await run_service.get_run(session, run_id)
    if run is None or run.state != RunState.LOADED or (started := read_started(run)) is None:
        return False
    notes = await session.exec(
        select(RunEvent).where(RunEvent.job_id == run.job_id, RunEvent.dt == run.dt, RunEvent.event == LATE_MARKER)
    )
    if not any((_as_utc(note.at) or started) > started for note in notes.all()):
        return False
    return await _send_back(session, run, "day marker rewritten during the load: late events")
