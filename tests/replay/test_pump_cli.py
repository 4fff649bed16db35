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

    target = settings.stream("replay")  # an explicit stream; ingest's is not a target by default (issue #13)
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


async def _headwater(url: str, key: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "HEADWATER_REPLAY_URL": url, "HEADWATER_API_KEY": key, "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        HEADWATER, "pump", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_pump_verbs_list_show_create_preview_cancel_with_tables_or_json(
    service_url, api_key, aws, settings
) -> None:
    events = [make_event(f"v{n}", f"2026-11-24T10:00:0{n}Z", ad_id=f"ad-{n % 2}") for n in range(4)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    query = "SELECT * FROM raw_events"

    code, out, _ = await _headwater(service_url, api_key, "preview", "-q", query, "-n", "2", "--json")
    assert code == 0 and [json.loads(line)["data"]["event_id"] for line in out.splitlines()] == ["v0", "v1"]
    code, out, _ = await _headwater(service_url, api_key, "preview", "-q", query, "-n", "1")
    assert code == 0 and "partition key" in out and "v0" in out

    target = settings.stream("replay")  # an explicit stream; ingest's is not a target by default (issue #13)
    code, out, err = await _headwater(service_url, api_key, "create", "-q", query, "-s", target, "-p", "--json")
    assert code == 0, err
    job = json.loads(out)
    assert (job["state"], job["progress"]["emitted"]) == ("succeeded", 4)
    assert f"{job['id']} succeeded" in err  # the progress bar, on stderr only

    code, out, _ = await _headwater(service_url, api_key, "list", "--json")
    assert code == 0 and [j["id"] for j in json.loads(out)] == [job["id"]]
    code, out, _ = await _headwater(service_url, api_key, "list")
    assert code == 0 and job["id"] in out and "succeeded" in out and "emitted" in out
    code, out, _ = await _headwater(service_url, api_key, "show", job["id"], "--json")
    assert code == 0 and json.loads(out)["id"] == job["id"]
    code, out, _ = await _headwater(service_url, api_key, "show", job["id"])
    assert code == 0 and job["id"] in out and "succeeded" in out

    code, _, err = await _headwater(service_url, api_key, "cancel", job["id"])
    assert code == 1 and "409" in err and "already succeeded" in err

    code, out, _ = await _headwater(service_url, api_key, "--help")
    assert "create-job" not in out and "get-all-jobs" not in out  # the old verbs work but are hidden
