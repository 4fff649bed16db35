"""The ``headwater jobs`` commands against the loader on a real port."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from typer.testing import CliRunner

from headwater.main import app
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, DAYS


async def _run(served: str, key: str, *args: str) -> Any:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["jobs", *args, "--url", served, "--api-key", key], catch_exceptions=False
    )
    return result


def _create_args(name: str, source: str, start: str, *extra: str) -> list[str]:
    return [
        "create",
        "--name",
        name,
        "--schema",
        "ad_events",
        "--version",
        "1",
        "--source",
        source,
        "--start",
        start,
        *extra,
    ]


async def test_jobs_commands_create_list_pause_and_explain_errors(served: str, api_keys: dict[str, str]) -> None:
    key = api_keys["admin"]
    source = "s3://hw-raw/beacon/dt=YYYY-MM-DD/"
    created = await _run(
        served, key, *_create_args("cli job", source, "2026-11-20", "--email", "a@example.com", "--json")
    )
    assert created.exit_code == 0, created.output
    job = json.loads(created.stdout)
    assert (job["name"], job["emails"], job["state"]) == ("cli job", ["a@example.com"], "active")

    listed = await _run(served, key, "list")
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if "cli job" in line)
    assert str(job["id"]) in row and "active" in row and "duckdb:ad_events" in row
    as_json = json.loads((await _run(served, key, "list", "--json")).stdout)
    assert [(j["id"], j["state"]) for j in as_json] == [(job["id"], "active")]

    shown = await _run(served, key, "show", str(job["id"]))
    assert "cli job" in shown.stdout and "a@example.com" in shown.stdout
    assert json.loads((await _run(served, key, "show", str(job["id"]), "--json")).stdout)["id"] == job["id"]

    paused = await _run(served, key, "pause", str(job["id"]))
    assert paused.stdout.strip() == f"job {job['id']} is paused"
    resumed = json.loads((await _run(served, key, "resume", str(job["id"]), "--json")).stdout)
    assert resumed["state"] == "active"
    runs = await _run(served, key, "runs", str(job["id"]), "--json")
    assert runs.exit_code == 0 and isinstance(json.loads(runs.stdout), list)

    refused = await _run(served, key, *_create_args("x", "s3://hw-raw/nodate/", "2026-11-20"))
    assert refused.exit_code == 1
    assert "HTTP 422" in refused.output and "source" in refused.output

    deleted = await _run(served, key, "delete", str(job["id"]), "--json")
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["dates_dropped"] == 0
    assert (await _run(served, key, "show", str(job["id"]))).exit_code == 1


async def test_jobs_create_follows_a_backfill_until_its_dates_are_loaded(
    served: str, api_keys: dict[str, str], worker: Any, transform: FakeTransform, aws: Any, loader_settings: Any
) -> None:
    s3 = await aws.get("s3")
    for day, ads in DAYS.items():
        await put_day(s3, loader_settings, day, beacon_events(day, ads))
    end = (D1 + timedelta(days=2)).isoformat()
    args = _create_args("backfill", "s3://hw-raw/beacon/dt=YYYY-MM-DD/", D1.isoformat(), "--end", end)
    result = await _run(served, api_keys["admin"], *args, "--progress", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == {"loaded": 3}
    assert "dates ended" in result.stderr and "3/3" in result.stderr

    runs = await _run(served, api_keys["admin"], "runs", str(json.loads(result.stdout)["id"]))
    assert runs.stdout.count("│ loaded ") == 3
