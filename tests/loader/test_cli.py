"""The ``headwater jobs`` commands against the loader on a real port."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner

from shared.cli.main import app


async def _run(served: str, key: str, *args: str) -> Any:
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["jobs", *args, "--url", served, "--api-key", key], catch_exceptions=False
    )
    return result


async def test_jobs_commands_create_list_pause_and_explain_errors(served: str, api_keys: dict[str, str]) -> None:
    key = api_keys["admin"]
    created = await _run(
        served,
        key,
        "create",
        "--name",
        "cli job",
        "--schema",
        "ad_events",
        "--version",
        "1",
        "--source",
        "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
        "--start",
        "2026-11-20",
        "--email",
        "a@example.com",
    )
    assert created.exit_code == 0, created.output
    job = json.loads(created.output)
    assert (job["name"], job["emails"], job["state"]) == ("cli job", ["a@example.com"], "active")

    listed = await _run(served, key, "list")
    assert f"{job['id']:>4}  active" in listed.output and "duckdb:ad_events" in listed.output
    paused = await _run(served, key, "pause", str(job["id"]))
    assert paused.output.strip() == f"job {job['id']} is paused"

    refused = await _run(
        served,
        key,
        "create",
        "--name",
        "x",
        "--schema",
        "ad_events",
        "--version",
        "1",
        "--source",
        "s3://hw-raw/nodate/",
        "--start",
        "2026-11-20",
    )
    assert refused.exit_code == 1
    assert "HTTP 422" in refused.output and "source" in refused.output
