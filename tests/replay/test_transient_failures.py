"""A replay interrupted by a transient failure (shared.retry.is_transient) is tried again and resumes; the last try
marks it failed. Any other failure fails the job at once."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from services.replay import pump
from tests.replay.conftest import make_event, put_archive, read_stream


def _flaky_materialise(monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception) -> list[int]:
    """Make the first ``failures`` selections raise ``error``; return the list counting the calls."""
    real = pump.materialise
    calls: list[int] = []

    async def materialise(**kwargs: Any) -> int:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return await real(**kwargs)

    monkeypatch.setattr(pump, "materialise", materialise)
    return calls


async def test_a_transient_failure_retries_the_job_which_then_succeeds(
    client, aws, settings, run_worker, monkeypatch
) -> None:
    settings.retry_backoff_s = 0.05
    events = [make_event(f"t{n}", f"2026-11-24T10:00:0{n}Z") for n in range(3)]
    await put_archive(await aws.get("s3"), settings.bucket("raw"), events)
    calls = _flaky_materialise(monkeypatch, 1, EndpointConnectionError(endpoint_url="http://s3.example"))
    job_id = (await client.post("/v1/replays", json={"selection": {}})).json()["id"]

    await run_worker()

    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "succeeded", job
    assert len(calls) == 2
    records = await read_stream(await aws.get("kinesis"), settings.stream("replay"))
    assert [r["data"]["event_id"] for r in records] == ["t0", "t1", "t2"]


async def test_the_last_try_of_a_transient_failure_fails_the_job(client, settings, run_worker, monkeypatch) -> None:
    settings.retry_backoff_s = 0.05
    settings.job_max_tries = 2
    calls = _flaky_materialise(monkeypatch, 10, EndpointConnectionError(endpoint_url="http://s3.example"))
    job_id = (await client.post("/v1/replays", json={"selection": {}})).json()["id"]

    await run_worker()

    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "failed", job
    assert "EndpointConnectionError" in job["error"]
    assert len(calls) == 2


async def test_a_failure_that_is_not_transient_fails_the_job_at_once(client, settings, run_worker, monkeypatch) -> None:
    calls = _flaky_materialise(monkeypatch, 10, ValueError("broken selection"))
    job_id = (await client.post("/v1/replays", json={"selection": {}})).json()["id"]

    await run_worker()

    job = (await client.get(f"/v1/replays/{job_id}")).json()
    assert job["state"] == "failed", job
    assert job["error"] == "ValueError: broken selection"
    assert len(calls) == 1
