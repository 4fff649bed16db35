"""``headwater loadgen`` sends impressions and clicks at a rate and reports what ingest answered."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys

from services.ingest.loadgen import LoadPlan, plan_events, run_load
from shared.aws import AwsClients
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, archived_records


def test_plan_follows_the_click_through_probability() -> None:
    events = plan_events(LoadPlan(url="http://x", rate=1000, duration_s=2, ctr=0.3, ads=5, seed=1))
    impressions = [e for e in events if e["type"] == "impression"]
    clicks = [e for e in events if e["type"] == "click"]
    assert len(impressions) == 2000
    assert 0.27 < len(clicks) / len(impressions) < 0.33
    assert {e["ad_id"] for e in events} <= {f"ad-{i}" for i in range(5)}


async def test_loadgen_cli_sends_beacons_and_reports_rate_errors_and_latency(ingest: Ingest) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "headwater.main",
        "loadgen",
        "--url",
        ingest.url,
        "--rate",
        "80",
        "--duration",
        "1",
        "--seed",
        "3",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["impressions"] == 80 and summary["errors"] == 0
    assert summary["achieved_events_per_s"] > 0 and summary["p99_ms"] >= summary["p50_ms"] > 0
    assert "loadgen" in stderr.decode()

    async def _counted() -> dict | None:
        body = (await ingest.http.get("/v1/realtime", headers=ingest.auth(ingest.read_key))).json()
        totals = body["totals"]
        return body if (totals["impressions"], totals["clicks"]) == (80, summary["clicks"]) else None

    await wait_until(_counted, message="every impression and click counted")


async def test_loadgen_batch_mode_posts_events_that_reach_the_archive(ingest: Ingest, aws: AwsClients) -> None:
    plan = LoadPlan(url=ingest.url, rate=200, duration_s=0.5, batch=25, api_key=ingest.write_key, seed=5)
    report = await run_load(plan)
    assert report.errors == 0 and report.statuses == {202: report.requests}
    assert report.requests == -(-report.events // 25)

    async def _all_archived() -> bool:
        return len(await archived_records(aws, ingest.settings)) == report.events

    await wait_until(_all_archived, message="every loadgen event archived")


def test_plan_spreads_client_timestamps_over_the_given_days_with_prefixed_ids() -> None:
    from datetime import date, datetime

    days = [date(2026, 11, 20), date(2026, 11, 21)]
    events = plan_events(LoadPlan(url="http://x", rate=100, duration_s=1, seed=2, days=days, id_prefix="run7-"))
    stamped = {datetime.fromisoformat(e["event_time"]).date() for e in events}
    assert stamped == set(days)
    assert all(e["event_id"].startswith("run7-") for e in events)
    # A click falls on the same day as its impression, after it.
    for impression, click in itertools.pairwise(events):
        if impression["type"] == "impression" and click["type"] == "click":
            assert click["event_time"] > impression["event_time"]
            assert click["event_time"][:10] == impression["event_time"][:10]
