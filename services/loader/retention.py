"""Retention and data removal: delete dates from the warehouse and expire their curated S3 data."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlmodel import col, select

from services.loader import runs as run_service
from services.loader.models import Job, JobRun, RunState, utc_now
from services.loader.scanner import today_utc
from services.loader.schema_store import load_schema
from services.loader.settings import LoaderSettings
from services.loader.traffic import delete_view_days
from services.loader.warehouse import open_job_adapter
from services.loader.wiring import LoaderWiring
from shared.contracts import CuratedPartition, advertising_view_day_prefix
from shared.logging import get_logger

log = get_logger(__name__)


async def _delete_prefix(s3: Any, bucket: str, prefix: str) -> int:
    deleted = 0
    token: dict[str, str] = {}
    while True:
        page = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix, **token)
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            await s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
        if not page.get("IsTruncated"):
            return deleted
        token = {"ContinuationToken": page["NextContinuationToken"]}


async def drop_date(
    settings: LoaderSettings, aws: Any, job: Job, dt: date, *, expire_curated: bool
) -> tuple[int, int, int]:
    """Delete a date's rows from the job's warehouse table; with ``expire_curated`` also its curated objects and
    the traffic items its advertising view wrote. Return (rows, objects, traffic items)."""
    s3 = await aws.get("s3")
    schema = await load_schema(s3, settings, job.schema_name, job.schema_version)
    rows = await open_job_adapter(job, settings, aws).delete_date(job.table_name, schema, dt)
    objects = traffic = 0
    if expire_curated:
        curated = settings.bucket("curated")
        partition = CuratedPartition(job.schema_name, job.schema_version, dt)
        objects += await _delete_prefix(s3, curated, partition.day_prefix)
        view = advertising_view_day_prefix(job.schema_name, job.schema_version, dt)
        # The view says which ads the day's traffic items belong to: read it before it goes.
        traffic = await delete_view_days(s3, await aws.get("dynamodb"), settings, curated, view)
        objects += await _delete_prefix(s3, curated, view)
    return rows, objects, traffic


async def apply_retention(wiring: LoaderWiring, job: Job) -> list[date]:
    """Delete the job's dates older than its retention; log each deletion in the runs history."""
    if not job.retention_days or job.id is None:
        return []
    cutoff = today_utc() - timedelta(days=job.retention_days)
    async with wiring.sessions() as session:
        result = await session.exec(
            select(JobRun)
            .where(JobRun.job_id == job.id, col(JobRun.dt) < cutoff, JobRun.state == RunState.LOADED)
            .order_by(col(JobRun.dt))
        )
        expired_runs = list(result.all())
    expired: list[date] = []
    for run in expired_runs:
        rows, objects, traffic = await drop_date(wiring.settings, wiring.aws, job, run.dt, expire_curated=True)
        async with wiring.sessions() as session:
            if await run_service.transition(
                session, run.id or 0, [RunState.LOADED], RunState.EXPIRED, finished_at=utc_now()
            ):
                await run_service.log_event(
                    session,
                    job_id=job.id,
                    dt=run.dt,
                    event="expired",
                    detail=f"retention {job.retention_days} days: deleted {rows} rows, {objects} curated objects "
                    f"and {traffic} traffic items",
                )
                await session.commit()
        expired.append(run.dt)
        log.info("date_expired", job_id=job.id, dt=run.dt.isoformat(), rows=rows, objects=objects, traffic=traffic)
    return expired


async def apply_retention_all(wiring: LoaderWiring) -> int:
    """Apply retention to every job that has one; return dates expired."""
    async with wiring.sessions() as session:
        result = await session.exec(select(Job).where(col(Job.retention_days).is_not(None)))
        jobs = list(result.all())
    total = 0
    for job in jobs:
        try:
            total += len(await apply_retention(wiring, job))
        except Exception as exc:
            log.exception("retention_failed", job_id=job.id, error=str(exc))
    return total
