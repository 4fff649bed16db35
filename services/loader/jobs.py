"""Job service functions (create, list, pause, resume, cancel, delete, retry), called by routes and tools."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.loader import runs as run_service
from services.loader.models import (
    Job,
    JobCreate,
    JobRead,
    JobRun,
    JobState,
    JobUpdate,
    RedshiftTarget,
    RunEvent,
    RunState,
    utc_now,
)
from services.loader.retention import drop_date
from services.loader.schema_store import SchemaNotFound, load_schema
from services.loader.settings import LoaderSettings
from shared.errors import ConflictError, NotFoundError, UnprocessableError

# The run states whose rows are in the warehouse (drop_data deletes them).
DROPPABLE = (RunState.LOADED, RunState.LOADING)

# action -> (states it applies to, resulting state)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": ((JobState.ACTIVE,), JobState.PAUSED),
    "resume": ((JobState.PAUSED,), JobState.ACTIVE),
    "cancel": ((JobState.ACTIVE, JobState.PAUSED), JobState.CANCELLED),
}


def default_redshift_target(settings: LoaderSettings) -> RedshiftTarget:
    """Return the configured cluster, for a Redshift job that names no target of its own."""
    return RedshiftTarget(
        cluster_id=settings.redshift_cluster_id, database=settings.redshift_database, db_user=settings.redshift_db_user
    )


async def create_job(*, session: AsyncSession, settings: LoaderSettings, aws: Any, job_in: JobCreate) -> Job:
    """Create a load job after checking its schema version is registered."""
    s3 = await aws.get("s3")
    try:
        schema = await load_schema(s3, settings, job_in.schema_name, job_in.schema_version)
    except SchemaNotFound as exc:  # a referenced thing that does not exist: the documented 404, not a 422
        raise NotFoundError(
            str(exc), details=[{"field": "schema_version", "reason": f"{exc}: register it with transform first"}]
        ) from exc
    job = Job(
        name=job_in.name,
        schema_name=schema.name,
        schema_version=schema.version,
        source=job_in.source,
        start_date=job_in.start_date,
        end_date=job_in.end_date,
        warehouse=job_in.warehouse,
        engine=job_in.engine,
        table_name=job_in.table or schema.name,
        emails=" ".join(job_in.emails),
        retention_days=job_in.retention_days,
    )
    if job_in.warehouse == "redshift":
        # The job keeps its target: a later change of the loader's default cluster never moves its table.
        target = job_in.redshift or default_redshift_target(settings)
        job.redshift_target = target.model_dump_json(exclude_none=True)
    session.add(job)
    await session.commit()
    await session.refresh(job)
    return job


async def update_job(
    *, session: AsyncSession, settings: LoaderSettings, aws: Any, job_id: int, job_in: JobUpdate
) -> Job:
    """Update a job; a new schema version must keep every column of the current one (it may add some)."""
    job = await get_job(session=session, job_id=job_id)
    changes = job_in.model_dump(exclude_unset=True)
    if changes.get("schema_version") not in (None, job.schema_version):
        s3 = await aws.get("s3")
        try:
            new = await load_schema(s3, settings, job.schema_name, changes["schema_version"])
        except SchemaNotFound as exc:
            raise NotFoundError(str(exc), details=[{"field": "schema_version", "reason": str(exc)}]) from exc
        old = await load_schema(s3, settings, job.schema_name, job.schema_version)
        dropped = sorted({c.name for c in old.columns} - {c.name for c in new.columns})
        if dropped:
            reason = f"v{new.version} drops columns {', '.join(dropped)}; a new version may only add columns"
            raise UnprocessableError(reason, details=[{"field": "schema_version", "reason": reason}])
        job.schema_version = new.version
    if "end_date" in changes:
        if changes["end_date"] is not None and changes["end_date"] < job.start_date:
            raise UnprocessableError(
                "end_date is before start_date", details=[{"field": "end_date", "reason": "before start_date"}]
            )
        job.end_date = changes["end_date"]
    if "emails" in changes:
        job.emails = " ".join(changes["emails"] or [])
    if "retention_days" in changes:
        job.retention_days = changes["retention_days"]
    job.updated_at = utc_now()
    session.add(job)
    await session.commit()
    await session.refresh(job)
    return job


async def list_jobs(*, session: AsyncSession) -> list[tuple[Job, dict[str, int]]]:
    """Return every job with its per-state date counts."""
    jobs = (await session.exec(select(Job).order_by(col(Job.id)))).all()
    return [(job, await run_service.state_counts(session, job.id or 0)) for job in jobs]


async def get_job(*, session: AsyncSession, job_id: int) -> Job:
    """Return a job or raise NotFoundError."""
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


async def read_job(*, session: AsyncSession, job_id: int) -> JobRead:
    """Return a job as the API shows it, with its per-state date counts; raise NotFoundError."""
    job = await get_job(session=session, job_id=job_id)
    return JobRead.of(job, await run_service.state_counts(session, job_id))


async def apply_action(*, session: AsyncSession, job_id: int, action: str) -> Job:
    """Pause, resume or cancel a job; a cancelled job's waiting dates are cancelled (in-flight steps finish)."""
    job = await get_job(session=session, job_id=job_id)
    allowed, target = ACTIONS[action]
    if job.state not in allowed:
        raise ConflictError(
            f"cannot {action} a job that is {job.state}", details=[{"field": "state", "reason": job.state}]
        )
    await run_service.end_read(session)
    job.state = target
    job.updated_at = utc_now()
    session.add(job)
    if target == JobState.CANCELLED:
        await session.exec(  # type: ignore[call-overload]
            update(JobRun)
            .where(col(JobRun.job_id) == job_id, col(JobRun.state) == RunState.WAITING)
            .values(state=RunState.CANCELLED, updated_at=utc_now())
        )
    await session.commit()
    await session.refresh(job)
    return job


async def delete_job(*, session: AsyncSession, settings: LoaderSettings, aws: Any, job_id: int, drop_data: bool) -> int:
    """Delete a job, its runs and history; with ``drop_data`` first delete its loaded dates. Return dates dropped."""
    job = await get_job(session=session, job_id=job_id)
    runs = await run_service.runs_of(session, job_id)
    if any(run.state in (RunState.TRANSFORMING, RunState.LOADING) for run in runs) and job.state == JobState.ACTIVE:
        raise ConflictError("the job has dates in flight: pause or cancel it first")
    dropped = 0
    if drop_data:
        await _refuse_shared_dates(session, job, [run.dt for run in runs if run.state in DROPPABLE])
        for run in runs:
            if run.state in DROPPABLE:
                await drop_date(settings, aws, job, run.dt, expire_curated=False)
                dropped += 1
    await session.exec(delete(RunEvent).where(col(RunEvent.job_id) == job_id))  # type: ignore[call-overload]
    await session.exec(delete(JobRun).where(col(JobRun.job_id) == job_id))  # type: ignore[call-overload]
    await session.delete(job)
    await session.commit()
    return dropped


def _dates_text(days: list[date], shown: int = 10) -> str:
    text = ", ".join(day.isoformat() for day in days[:shown])
    return text + (f" and {len(days) - shown} more" if len(days) > shown else "")


async def _refuse_shared_dates(session: AsyncSession, job: Job, dates: list[date]) -> None:
    """Raise ConflictError when another job loads any of ``dates`` into the same table (its rows are theirs too)."""
    if not dates:
        return
    # A date is replaced whole in the table, whichever job loaded it: another job's loaded (or loading) date
    # holds the same rows, and dropping them would take that job's data.
    result = await session.exec(
        select(Job.id, Job.name, JobRun.dt)
        .join(JobRun, col(JobRun.job_id) == col(Job.id))
        .where(
            col(Job.id) != job.id,
            Job.warehouse == job.warehouse,
            Job.table_name == job.table_name,
            col(JobRun.dt).in_(dates),
            col(JobRun.state).in_([*DROPPABLE, RunState.TRANSFORMING]),
        )
        .order_by(col(Job.id), col(JobRun.dt))
    )
    shared: dict[tuple[int | None, str], list[date]] = {}
    for other_id, other_name, dt in result.all():
        shared.setdefault((other_id, other_name), []).append(dt)
    if shared:
        others = ", ".join(f"job {other_id} ({name!r}, {len(days)} dates)" for (other_id, name), days in shared.items())
        raise ConflictError(
            f"drop_data would delete dates of {job.warehouse} table {job.table_name} that other jobs load too: "
            f"{others}; delete without drop_data, or delete those jobs' data first",
            details=[
                {"field": "drop_data", "reason": f"job {other_id} loads {_dates_text(days)}"}
                for (other_id, _), days in shared.items()
            ],
        )


async def retry_date(*, session: AsyncSession, job_id: int, dt: date) -> JobRun:
    """Send a failed (or cancelled) date back to waiting with fresh attempts."""
    job = await get_job(session=session, job_id=job_id)
    run = await run_service.find_run(session, job_id, dt)
    if run is None:
        raise NotFoundError(f"job {job_id} has no run for {dt.isoformat()}")
    if job.state == JobState.CANCELLED:
        raise ConflictError("the job is cancelled")
    if not await run_service.transition(
        session,
        run.id or 0,
        [RunState.FAILED, RunState.CANCELLED],
        RunState.WAITING,
        attempts=0,
        next_attempt_at=None,
        error=None,
        finished_at=None,
    ):
        raise ConflictError(f"only failed or cancelled dates can be retried; this one is {run.state}")
    await run_service.log_event(session, job_id=job_id, dt=dt, event="retry_requested", detail="from the API")
    await session.commit()
    await session.refresh(run)
    return run


async def history(*, session: AsyncSession, job_id: int) -> list[RunEvent]:
    """Return a job's runs history, newest last."""
    await get_job(session=session, job_id=job_id)
    result = await session.exec(select(RunEvent).where(RunEvent.job_id == job_id).order_by(col(RunEvent.id)))
    return list(result.all())
