"""Per-date runs: idempotent creation (one row per job and date), state transitions and history."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.loader.models import IN_FLIGHT, JobRun, RunEvent, RunState, utc_now


async def log_event(session: AsyncSession, *, job_id: int, dt: date, event: str, detail: str = "") -> None:
    """Append an entry to the runs history (committed by the caller)."""
    session.add(RunEvent(job_id=job_id, dt=dt, event=event, detail=detail[:2000]))


async def end_read(session: AsyncSession) -> None:
    """End the session's read transaction before a write.

    SQLite (WAL) refuses at once, without waiting, to upgrade a read transaction to a write when another
    connection wrote meanwhile; starting the write in a fresh transaction makes it wait its turn instead.
    """
    if session.in_transaction() and not session.new and not session.dirty and not session.deleted:
        await session.commit()


async def runs_of(session: AsyncSession, job_id: int) -> list[JobRun]:
    """Return a job's runs in date order."""
    result = await session.exec(select(JobRun).where(JobRun.job_id == job_id).order_by(col(JobRun.dt)))
    return list(result.all())


async def run_dates(session: AsyncSession, job_id: int) -> set[date]:
    """Return the dates a job already has runs for."""
    result = await session.exec(select(JobRun.dt).where(JobRun.job_id == job_id))
    return set(result.all())


async def state_counts(session: AsyncSession, job_id: int) -> dict[str, int]:
    """Return {state: number of dates} for a job."""
    result = await session.exec(
        select(JobRun.state, func.count()).where(JobRun.job_id == job_id).group_by(JobRun.state)
    )
    return {state: count for state, count in result.all()}


async def get_run(session: AsyncSession, run_id: int) -> JobRun | None:
    """Return a run by id."""
    return await session.get(JobRun, run_id)


async def find_run(session: AsyncSession, job_id: int, dt: date) -> JobRun | None:
    """Return the run of a job's date."""
    result = await session.exec(select(JobRun).where(JobRun.job_id == job_id, JobRun.dt == dt))
    return result.first()


async def ensure_runs(session: AsyncSession, job_id: int, dates: Iterable[date]) -> int:
    """Create waiting runs for dates that have none; duplicates (scan + event) are ignored. Return created."""
    created = 0
    existing = await run_dates(session, job_id)
    await end_read(session)
    for dt in sorted(set(dates) - existing):
        try:
            async with session.begin_nested():
                session.add(JobRun(job_id=job_id, dt=dt))
                await log_event(session, job_id=job_id, dt=dt, event="discovered", detail="day marker found")
            created += 1
        except IntegrityError:
            continue
    await session.commit()
    return created


async def in_flight_count(session: AsyncSession, job_id: int) -> int:
    """Return how many of a job's dates are transforming or loading."""
    result = await session.exec(
        select(func.count()).select_from(JobRun).where(JobRun.job_id == job_id, col(JobRun.state).in_(IN_FLIGHT))
    )
    return int(result.one())


async def due_waiting_runs(session: AsyncSession, job_id: int, limit: int, now: datetime) -> list[JobRun]:
    """Return a job's waiting runs whose backoff has passed, earliest date first."""
    if limit <= 0:
        return []
    result = await session.exec(
        select(JobRun)
        .where(JobRun.job_id == job_id, JobRun.state == RunState.WAITING)
        .where((col(JobRun.next_attempt_at).is_(None)) | (col(JobRun.next_attempt_at) <= now))
        .order_by(col(JobRun.dt))
        .limit(limit)
    )
    return list(result.all())


async def transition(
    session: AsyncSession, run_id: int, from_states: Iterable[str], to_state: str, **values: object
) -> bool:
    """Move a run to ``to_state`` only if it is in one of ``from_states`` (a compare-and-set); return success."""
    now = utc_now()
    await end_read(session)
    statement = (
        update(JobRun)
        .where(col(JobRun.id) == run_id, col(JobRun.state).in_(list(from_states)))
        .values(state=to_state, updated_at=now, **values)
    )
    result = await session.exec(statement)  # type: ignore[call-overload]
    await session.commit()
    return bool(result.rowcount)


def backoff_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Return the exponential backoff before attempt ``attempts + 1``."""
    return min(max_s, base_s * (2 ** max(0, attempts - 1)))


async def fail_attempt(
    session: AsyncSession, run: JobRun, error: str, *, max_attempts: int, base_s: float, max_s: float
) -> bool:
    """Record a failed attempt: back to waiting after a backoff, or failed when attempts are spent.

    Return True when the date is now failed for good.
    """
    now = utc_now()
    exhausted = run.attempts >= max_attempts
    if exhausted:
        values: dict[str, object] = {"error": error[:4000], "finished_at": now, "next_attempt_at": None}
        target = RunState.FAILED
    else:
        delay = backoff_delay(run.attempts, base_s, max_s)
        values = {"error": error[:4000], "next_attempt_at": now + timedelta(seconds=delay)}
        target = RunState.WAITING
    assert run.id is not None
    changed = await transition(session, run.id, [*IN_FLIGHT, RunState.WAITING], target, **values)
    if changed:
        event = "failed" if exhausted else "attempt_failed"
        await log_event(session, job_id=run.job_id, dt=run.dt, event=event, detail=f"attempt {run.attempts}: {error}")
        await session.commit()
    return changed and exhausted
