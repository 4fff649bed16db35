"""Mycroft backfill: load a date range into the warehouse through the loader's API, one resumable task per day.

Each day is one loader job of that one day (``POST {loader_url}/v1/jobs`` with ``start_date = end_date``, named
``backfill <schema> v<version> <day>`` so a retry finds it again), followed until its run is ``loaded``
(``GET /v1/jobs/{id}/runs``). A day the loader fails fails its task (and the range). A resubmit re-runs only the
days whose targets are missing; such a day retries its failed date on the same loader job
(``POST /v1/jobs/{id}/runs/{dt}/retry``), so the loader keeps one job per day. A second job (``... #2``) is made
only when the day's job was cancelled or its date expired, which the loader's retry refuses.

The key (``loader_api_key``) needs the ``jobs:admin`` and ``read`` scopes.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.transform.chains.base import Task, TaskContext

LOADED, FAILED_STATES = "loaded", ("failed", "cancelled", "expired")
# Dates the loader retries in place (an expired date, or any date of a cancelled job, needs a new job).
RETRYABLE_STATES = ("failed", "cancelled")


class LoadSpec(BaseModel):
    """What to load (the loader's job fields) ..."""

    model_config = ConfigDict(extra="forbid")
    schema_name: str = Field(min_length=1, max_length=127)
    schema_version: int = Field(default=1, ge=1)
    source: str = Field(description="s3://bucket/prefix/dt=YYYY-MM-DD/ (the loader's source template)")
    warehouse: str = "duckdb"
    table: str | None = None


class DayParams(LoadSpec):
    """... for one day."""

    day: date


class RangeParams(LoadSpec):
    """... for a range of days (at most 366)."""

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> RangeParams:
        if self.end < self.start or (self.end - self.start).days > 366:
            raise ValueError("end must be on or after start, at most 366 days later")
        return self


def _job_name(params: DayParams) -> str:
    return f"backfill {params.schema_name} v{params.schema_version} {params.day.isoformat()}"


class LoadDayTask(Task):
    """Have the loader load one day; done when the loader says the day is loaded."""

    Params = DayParams
    retries = 2
    retry_delay_s = 10.0
    timeout_s = 3 * 3600.0
    poll_s = 2.0

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        settings = context.settings
        key = settings.loader_api_key.get_secret_value() if settings.loader_api_key else ""
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=settings.loader_url, headers=headers, timeout=30) as loader:
            job = await self._job(loader, params, context)
            while True:
                run = await _day_run(loader, job["id"], params.day)
                state = run["state"] if run else "waiting"
                if state == LOADED:
                    assert run is not None
                    context.log(f"job {job['id']}: {params.day} loaded, {run.get('rows_loaded')} rows")
                    return json.dumps({"job_id": job["id"], "run": run}, sort_keys=True).encode()
                if state in FAILED_STATES:
                    assert run is not None
                    raise RuntimeError(f"loader job {job['id']} {state} {params.day}: {run.get('error')}")
                await asyncio.sleep(self.poll_s)

    async def _job(self, loader: httpx.AsyncClient, params: DayParams, context: TaskContext) -> dict[str, Any]:
        """Return the day's loader job: the existing one (its failed date retried), else a new one."""
        name = _job_name(params)
        listing = await loader.get("/v1/jobs")
        listing.raise_for_status()
        mine = [job for job in listing.json() if job["name"] == name or job["name"].startswith(name + " #")]
        if mine:  # a retry or a resubmit
            newest = max(mine, key=lambda job: job["id"])
            run = await _day_run(loader, newest["id"], params.day) if newest["state"] != "cancelled" else None
            state = run["state"] if run else ("cancelled" if newest["state"] == "cancelled" else "waiting")
            if state in RETRYABLE_STATES and newest["state"] != "cancelled":
                retried = await loader.post(f"/v1/jobs/{newest['id']}/runs/{params.day.isoformat()}/retry")
                if retried.status_code != 409:  # 409: retried by someone else meanwhile; follow it all the same
                    retried.raise_for_status()
                context.log(f"retrying {params.day} on loader job {newest['id']} (it was {state})")
                return newest
            if state not in FAILED_STATES:
                context.log(f"following loader job {newest['id']} ({newest['name']}), {params.day} is {state}")
                return newest
            name = f"{name} #{len(mine) + 1}"
        body = {
            **params.model_dump(mode="json", exclude={"day"}, exclude_none=True),
            "name": name,
            "start_date": params.day.isoformat(),
            "end_date": params.day.isoformat(),
        }
        created = await loader.post("/v1/jobs", json=body)
        created.raise_for_status()
        context.log(f"created loader job {created.json()['id']} ({name}) at {time.strftime('%H:%M:%S')}")
        return created.json()


async def _day_run(loader: httpx.AsyncClient, job_id: int, day: date) -> dict[str, Any] | None:
    """Return the loader's run of ``day`` in job ``job_id`` (None before the loader found the day's data)."""
    response = await loader.get(f"/v1/jobs/{job_id}/runs")
    response.raise_for_status()
    return next((run for run in response.json() if run["dt"] == day.isoformat()), None)


class BackfillTask(Task):
    """Load every day of the range (one LoadDayTask each) and summarise the rows loaded per day."""

    Params = RangeParams

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        spec = params.model_dump(exclude={"start", "end"})
        days = (params.end - params.start).days + 1
        return [(LoadDayTask, DayParams(**spec, day=params.start + timedelta(days=n))) for n in range(days)]

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        days = [json.loads(raw) for raw in inputs]
        summary = {d["run"]["dt"]: d["run"].get("rows_loaded") for d in days}
        context.log(f"{len(days)} days loaded, {sum(v or 0 for v in summary.values())} rows")
        return json.dumps({"start": params.start.isoformat(), "end": params.end.isoformat(), "days": summary}).encode()
