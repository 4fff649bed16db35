"""The shipped chains end to end: advertising/daily_report (params in the query string, CSV behind a presigned
URL) and mycroft/backfill (one task per day through the loader's HTTP API, resumable after a failed day)."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import SecretStr

from services.transform.chains.mycroft import backfill_chain
from services.transform.settings import TransformSettings
from tests.helpers import free_port, wait_until
from tests.transform.chain_helpers import background_worker, fast, settled, states


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


class StubLoader:
    """The loader's /v1/jobs API as the backfill chain uses it; a day in ``failing`` fails its load."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.failing: set[str] = set()
        self.app = FastAPI()
        self.app.post("/v1/jobs", status_code=201)(self.create_job)
        self.app.get("/v1/jobs")(self.list_jobs)
        self.app.get("/v1/jobs/{job_id}/runs")(self.list_job_runs)

    async def create_job(self, request: Request) -> dict[str, Any]:
        if request.headers.get("authorization") != "Bearer loader-key":
            raise HTTPException(401)
        body = await request.json()
        state = "failed" if body["start_date"] in self.failing else "loaded"
        job = {**body, "id": len(self.jobs) + 1, "state": state}
        self.jobs.append(job)
        return job

    async def list_jobs(self) -> list[dict[str, Any]]:
        return [{"id": j["id"], "name": j["name"]} for j in self.jobs]

    async def list_job_runs(self, job_id: int) -> list[dict[str, Any]]:
        job = self.jobs[job_id - 1]
        return [{"dt": job["start_date"], "state": job["state"], "rows_loaded": 7, "error": "boom"}]


@pytest.fixture
async def stub_loader() -> AsyncIterator[tuple[StubLoader, str]]:
    loader = StubLoader()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(loader.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: asyncio.sleep(0, server.started), timeout=20, message="stub loader did not start")
    yield loader, f"http://127.0.0.1:{port}"
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_backfill_loads_one_day_per_task_and_resumes_at_the_failed_day(
    app_client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: TransformSettings,
    stub_loader: tuple[StubLoader, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader, url = stub_loader
    monkeypatch.setattr(backfill_chain.LoadDayTask, "poll_s", 0.05)
    monkeypatch.setattr(backfill_chain.LoadDayTask, "retries", 0)
    worker_settings = fast(settings).model_copy(update={"loader_url": url, "loader_api_key": SecretStr("loader-key")})
    params = {
        "schema_name": "ad_events",
        "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
        "start": "2026-11-01",
        "end": "2026-11-03",
    }
    loader.failing.add("2026-11-02")
    async with background_worker(worker_settings):
        first = await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        failed = await settled(app_client, admin_headers, first.json()["target"])
        loader.failing.clear()  # the loader is fixed
        await app_client.post("/v1/chains/mycroft/backfill/BackfillTask", json=params, headers=admin_headers)
        done = await settled(app_client, admin_headers, first.json()["target"])

    day_states = [t["state"] for t in failed["tasks"] if t["task"] == "LoadDayTask"]
    assert failed["job_status"] == "FAILED" and sorted(day_states) == ["DONE", "DONE", "FAILED"]
    assert "requirement LoadDayTask failed" in failed["error"]
    assert states(done) == {"BackfillTask": "DONE", "LoadDayTask": "DONE"}
    assert sorted(j["start_date"] for j in loader.jobs) == ["2026-11-01", "2026-11-02", "2026-11-02", "2026-11-03"]
    assert [j["name"] for j in loader.jobs if j["start_date"] == "2026-11-02"] == [
        "backfill ad_events v1 2026-11-02",
        "backfill ad_events v1 2026-11-02 #2",
    ]
    async with httpx.AsyncClient() as plain:
        summary = (await plain.get(done["resource_url"])).json()
    assert summary["days"] == {"2026-11-01": 7, "2026-11-02": 7, "2026-11-03": 7}
