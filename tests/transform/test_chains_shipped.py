"""The shipped chains end to end: advertising/daily_report (params in the query string, CSV behind a presigned
URL) and mycroft/backfill (one task per day through the real loader app served by uvicorn, its arq worker and
its DuckDB warehouse, resumable after a failed day). Transform's part for the loader is played by the loader
tests' FakeTransform over the real SQS queues, so that a test can make a day fail."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from arq.worker import Worker
from pydantic import SecretStr

from services.loader.app import create_app as create_loader_app
from services.loader.settings import LoaderSettings
from services.loader.worker import worker_options
from services.transform.chains.mycroft import backfill_chain
from services.transform.settings import TransformSettings
from shared.auth import create_api_key
from shared.aws import AwsClients
from shared.bootstrap import ensure_buckets, ensure_traffic_table
from shared.db import create_engine, create_tables, session_factory
from shared.settings import QUEUES
from tests.helpers import free_port, wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day, put_schema
from tests.transform.chain_helpers import background_worker, fast, settled, states, status


async def test_daily_report_takes_its_day_from_the_query_string_and_serves_a_csv(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], s3: Any, settings: TransformSettings
) -> None:
    view = pa.table({"ad_id": ["ad-2", "ad-1"], "impressions": [50, 10], "clicks": [5, 0]})
    buffer = io.BytesIO()
    pq.write_table(view, buffer)
    key = "_views/advertising/ad_events/v1/dt=2026-11-01/part-00000.parquet"
    await s3.put_object(Bucket=settings.bucket("curated"), Key=key, Body=buffer.getvalue())

    unknown = await app_client.post(
        "/api/chains/advertising/daily_report/DailyReportTask?day=2026-11-01&colour=red", headers=admin_headers
    )
    submitted = await app_client.post(
        "/api/chains/advertising/daily_report/DailyReportTask?day=2026-11-01", headers=admin_headers
    )
    async with background_worker(fast(settings)):
        done = await settled(app_client, admin_headers, submitted.json()["target"])
    async with httpx.AsyncClient() as plain:
        csv_text = (await plain.get(done["resource_url"])).text

    assert unknown.status_code == 422 and unknown.json()["error"]["message"] == "unknown parameters: colour"
    assert submitted.status_code == 202 and done["tasks"][0]["params"]["day"] == "2026-11-01"
    assert csv_text.splitlines() == [
        "day,ad_id,impressions,clicks,ctr",
        "2026-11-01,ad-1,10,0,0.0000",
        "2026-11-01,ad-2,50,5,0.1000",
    ]


@dataclass
class RealLoader:
    """The loader app on a real port, its worker, and the fake transform answering its requests."""

    url: str
    key: str
    settings: LoaderSettings
    transform: FakeTransform

    async def jobs(self) -> list[dict[str, Any]]:
        """Return the loader's jobs, as its API lists them."""
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}) as http:
            response = await http.get("/v1/jobs")
            response.raise_for_status()
            return response.json()

    async def runs(self, job_id: int) -> list[dict[str, Any]]:
        """Return a job's per-date runs."""
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}) as http:
            response = await http.get(f"/v1/jobs/{job_id}/runs")
            response.raise_for_status()
            return response.json()

    async def rows(self, day: date) -> int:
        """Return the rows of ``day`` in the warehouse table."""
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}) as http:
            response = await http.get("/v1/warehouse/ad_events/count", params={"dt": day.isoformat()})
            response.raise_for_status()
            return response.json()["rows"]


async def _bootstrap_loader(settings: LoaderSettings) -> None:
    """Create what the loader uses beside transform's buckets and queues, and register the ad_events schema."""
    async with AwsClients(settings) as aws:
        s3, sqs = await aws.get("s3"), await aws.get("sqs")
        await ensure_buckets(s3, settings)
        for name in QUEUES:  # plain, as transform's fixture made its own (creating them again is a no-op)
            await sqs.create_queue(QueueName=settings.queue(name))
        await ensure_traffic_table(await aws.get("dynamodb"), settings)
        await put_schema(s3, settings)


async def _loader_key(settings: LoaderSettings) -> str:
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            return await create_api_key(session=session, scopes=["jobs:admin", "read"])
    finally:
        await engine.dispose()


@pytest.fixture
async def real_loader(make_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[RealLoader]:
    """Serve the loader app with uvicorn on a free port, with its worker and the fake transform running."""
    settings = make_settings(
        LoaderSettings,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'loader.db'}",  # the loader's own metadata DB and keys
        max_attempts=1,  # a day the transform fails is failed at once
        scan_interval_s=60,
        notify_flush_s=60,
    )
    await _bootstrap_loader(settings)
    key = await _loader_key(settings)
    options = worker_options(settings)
    options["cron_jobs"] = []  # creating a job scans it; retrying a date dispatches it
    worker = Worker(**options, poll_delay=0.05)
    aws = AwsClients(settings)
    transform = FakeTransform(settings, aws)
    stop = asyncio.Event()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_loader_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    tasks = [asyncio.create_task(worker.async_run()), asyncio.create_task(transform.run(stop))]
    tasks.append(asyncio.create_task(server.serve()))
    url = f"http://127.0.0.1:{port}"

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_until(_up, timeout=30, message="loader app did not start")
        yield RealLoader(url=url, key=key, settings=settings, transform=transform)
    finally:
        server.should_exit = True
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(tasks[2], timeout=10)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(tasks[1], timeout=5)
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()
        await aws.close()


async def _every_task_settled(client: httpx.AsyncClient, headers: dict[str, str], target: str) -> dict[str, Any]:
    """Wait until the root and every task of its DAG are DONE or FAILED (a failed day fails the root at once)."""

    async def _probe() -> dict[str, Any] | None:
        body = await status(client, headers, target)
        return body if all(t["state"] in ("DONE", "FAILED") for t in body["tasks"]) else None

    await settled(client, headers, target)
    return await wait_until(_probe, timeout=30, message=f"the tasks of {target} did not settle")


DAY1 = date(2026, 11, 1)
DAYS = [DAY1 + timedelta(days=n) for n in range(3)]
BACKFILL = {"schema_name": "ad_events", "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/", "start": "2026-11-01"}


async def test_backfill_loads_one_day_per_loader_job_and_a_resubmit_redoes_only_the_failed_day(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: TransformSettings,
    real_loader: RealLoader,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backfill_chain.LoadDayTask, "poll_s", 0.05)
    monkeypatch.setattr(backfill_chain.LoadDayTask, "retries", 0)
    for n, day in enumerate(DAYS):
        await put_day(s3, settings, day, beacon_events(day, {"ad-1": (n + 2, 1)}))  # 3, 4 and 5 rows
    worker_settings = fast(settings).model_copy(
        update={"loader_url": real_loader.url, "loader_api_key": SecretStr(real_loader.key)}
    )
    params = {**BACKFILL, "end": "2026-11-03"}
    real_loader.transform.fail_dates.add(DAYS[1])
    async with background_worker(worker_settings):
        first = await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        failed = await _every_task_settled(app_client, admin_headers, first.json()["target"])
        jobs_after_failure = await real_loader.jobs()
        runs_after_failure = {job["id"]: await real_loader.runs(job["id"]) for job in jobs_after_failure}

        real_loader.transform.fail_dates.clear()  # transform is fixed
        again = await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        done = await settled(app_client, admin_headers, first.json()["target"])
    jobs = await real_loader.jobs()
    runs = {job["id"]: await real_loader.runs(job["id"]) for job in jobs}

    day_states = {t["params"]["day"]: t["state"] for t in failed["tasks"] if t["task"] == "LoadDayTask"}
    assert failed["job_status"] == "FAILED" and "requirement LoadDayTask failed" in failed["error"]
    assert day_states == {"2026-11-01": "DONE", "2026-11-02": "FAILED", "2026-11-03": "DONE"}
    # One loader job per day, each of that one day.
    assert sorted((j["name"], j["start_date"], j["end_date"]) for j in jobs_after_failure) == [
        (f"backfill ad_events v1 {d}", d.isoformat(), d.isoformat()) for d in DAYS
    ]
    by_day = {j["start_date"]: j["id"] for j in jobs_after_failure}
    assert runs_after_failure[by_day["2026-11-02"]][0]["state"] == "failed"
    assert "mapping exploded" in runs_after_failure[by_day["2026-11-02"]][0]["error"]

    assert again.status_code == 202 and states(done) == {"BackfillTask": "DONE", "LoadDayTask": "DONE"}
    # The resubmit made no new job and touched only the failed day; the loaded days were not loaded again.
    assert sorted(j["id"] for j in jobs) == sorted(by_day.values())
    for day in ("2026-11-01", "2026-11-03"):
        assert runs[by_day[day]] == runs_after_failure[by_day[day]]
    assert [(r["state"], r["attempts"]) for r in runs[by_day["2026-11-02"]]] == [("loaded", 1)]
    assert sorted(r.dt for r in real_loader.transform.requests) == [DAYS[0], DAYS[1], DAYS[1], DAYS[2]]
    assert [await real_loader.rows(day) for day in DAYS] == [3, 4, 5]
    async with httpx.AsyncClient() as plain:
        summary = (await plain.get(done["resource_url"])).json()
    assert summary["days"] == {"2026-11-01": 3, "2026-11-02": 4, "2026-11-03": 5}


async def test_backfill_makes_a_second_job_for_a_day_whose_loader_job_was_cancelled(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: TransformSettings,
    real_loader: RealLoader,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backfill_chain.LoadDayTask, "poll_s", 0.05)
    monkeypatch.setattr(backfill_chain.LoadDayTask, "retries", 0)
    await put_day(s3, settings, DAY1, beacon_events(DAY1, {"ad-1": (2, 1)}))
    worker_settings = fast(settings).model_copy(
        update={"loader_url": real_loader.url, "loader_api_key": SecretStr(real_loader.key)}
    )
    params = {**BACKFILL, "end": "2026-11-01"}
    real_loader.transform.fail_dates.add(DAY1)
    headers = {"Authorization": f"Bearer {real_loader.key}"}
    async with background_worker(worker_settings):
        first = await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        failed = await _every_task_settled(app_client, admin_headers, first.json()["target"])
        [job] = await real_loader.jobs()
        async with httpx.AsyncClient(base_url=real_loader.url, headers=headers) as loader:
            cancelled = await loader.post(f"/v1/jobs/{job['id']}/cancel")  # the retry API refuses cancelled jobs
        real_loader.transform.fail_dates.clear()
        await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        done = await settled(app_client, admin_headers, first.json()["target"])
    jobs = await real_loader.jobs()

    assert failed["job_status"] == "FAILED" and cancelled.status_code == 200, cancelled.text
    assert done["job_status"] == "DONE"
    assert [(j["name"], j["state"]) for j in jobs] == [
        ("backfill ad_events v1 2026-11-01", "cancelled"),
        ("backfill ad_events v1 2026-11-01 #2", "active"),
    ]
    assert [(r["state"], r["rows_loaded"]) for r in await real_loader.runs(jobs[1]["id"])] == [("loaded", 3)]
