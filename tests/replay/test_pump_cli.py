"""The pump CLI end to end: a real uvicorn server, a running arq worker, the `headwater` binary."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.replay.conftest import make_event, put_archive, read_stream

HEADWATER = str(Path(sys.executable).with_name("headwater"))


async def _pump(url: str, key: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "HEADWATER_REPLAY_URL": url, "HEADWATER_API_KEY": key, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        HEADWATER, "pump", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_pump_cli_creates_follows_previews_and_lists_jobs(service_url, api_key, aws, settings) -> None:
    events = [make_event(f"p{n}", f"2026-11-24T10:00:0{n}Z", ad_id=f"ad-{n % 2}") for n in range(6)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    query = "SELECT * FROM raw_events"

    code, out = await _pump(service_url, api_key, "preview-job", "-q", query, "-n", "2", "--compact-key", "ad_id")
    assert code == 0, out
    preview = [json.loads(line) for line in out.splitlines()]
    assert [(p["partition_key"], p["data"]["event_id"]) for p in preview] == [("ad-0", "p4"), ("ad-1", "p5")]

    target = settings.stream("events")
    code, out = await _pump(
        service_url,
        api_key,
        "create-job",
        "-q",
        query,
        "-s",
        target,
        "-p",
        "--compact-key",
        "ad_id",
        "--annotate",
        '{"force_overwrite": true}',
        "--rate",
        "100",
    )
    assert code == 0, out
    assert "succeeded" in out
    records = await read_stream(await aws.get("kinesis"), target)
    assert sorted(r["data"]["event_id"] for r in records) == ["p4", "p5"]
    assert all(r["data"]["_replay"]["force_overwrite"] is True for r in records)

    code, out = await _pump(service_url, api_key, "get-all-jobs")
    assert code == 0, out
    jobs = json.loads(out)
    assert len(jobs) == 1 and jobs[0]["progress"]["emitted"] == 2
    code, out = await _pump(service_url, api_key, "get-job", "--id", jobs[0]["id"], "-t")
    assert code == 0 and jobs[0]["id"] in out and "succeeded" in out


async def test_pump_cli_reports_refused_sql_and_bad_keys(service_url, api_key) -> None:
    code, out = await _pump(service_url, api_key, "create-job", "-q", "DELETE FROM raw_events")
    assert code == 1 and "query_refused" in out
    code, out = await _pump(service_url, "hw_bad_key", "get-all-jobs")
    assert code == 1 and "401" in out
