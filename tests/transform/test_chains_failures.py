"""Chains survive failure: a failed middle task fails its dependents and resumes after the fix; timeouts and
retries per task class; concurrent submits build each target once; a SIGKILLed worker's task is finished by
another worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from services.transform.settings import TransformSettings
from tests.helpers import wait_until
from tests.transform.chain_helpers import (
    abc_params,
    background_worker,
    fast,
    settled,
    states,
    status,
    submit,
    trace,
)


async def test_a_failed_middle_task_fails_its_dependents_and_a_resubmit_resumes_there(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    params = abc_params(tmp_path, fail_file=str(broken))
    async with background_worker(fast(settings)):
        first = await submit(app_client, admin_headers, "CTask", params)
        failed = await settled(app_client, admin_headers, first["target"])
        b_target = next(t["target"] for t in failed["tasks"] if t["task"] == "BTask")
        runs = (await app_client.get("/v1/chains/runs", params={"state": "FAILED"}, headers=admin_headers)).json()

        broken.unlink()  # the fix
        second = await submit(app_client, admin_headers, "CTask", params)
        fixed = await settled(app_client, admin_headers, second["target"])
        third = await submit(app_client, admin_headers, "CTask", params)

    assert states(failed) == {"ATask": "DONE", "BTask": "FAILED", "CTask": "FAILED"}
    c_task = failed["tasks"][0]
    assert c_task["error"] == f"requirement BTask failed ({b_target})" and c_task["cause"] == b_target
    assert "B is broken" in next(t["error"] for t in failed["tasks"] if t["task"] == "BTask")
    assert [r["run_id"] for r in runs["items"]] == [first["run_id"]]
    assert states(fixed) == {"ATask": "DONE", "BTask": "DONE", "CTask": "DONE"}
    assert trace(tmp_path) == ["A", "B", "B", "C"]  # A never rebuilt; B and C once after the fix
    assert third["job_status"] == "DONE" and trace(tmp_path) == ["A", "B", "B", "C"]


async def test_retry_restarts_a_failed_task_and_the_dependents_it_failed(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    params = abc_params(tmp_path, fail_file=str(broken))
    async with background_worker(fast(settings)):
        submitted = await submit(app_client, admin_headers, "CTask", params)
        failed = await settled(app_client, admin_headers, submitted["target"])
        b_target = next(t["target"] for t in failed["tasks"] if t["task"] == "BTask")
        detail = (await app_client.get("/v1/chains/task", params={"chain": b_target}, headers=admin_headers)).json()
        refused = await app_client.post("/v1/chains/retry", params={"chain": submitted["target"]}, headers={})
        broken.unlink()
        retried = await app_client.post("/v1/chains/retry", params={"chain": b_target}, headers=admin_headers)
        done = await settled(app_client, admin_headers, submitted["target"])
        again = await app_client.post("/v1/chains/retry", params={"chain": b_target}, headers=admin_headers)

    assert detail["traceback"].startswith("Traceback") and "RuntimeError: B is broken" in detail["traceback"]
    assert "B starts on b'a'" in detail["log"] and "RuntimeError: B is broken" in detail["log"]
    assert detail["params"]["fail_file"] == str(broken)
    assert refused.status_code == 401
    assert retried.status_code == 200, retried.text
    assert retried.json()["reset"] == [b_target, submitted["target"]]
    assert states(done) == {"ATask": "DONE", "BTask": "DONE", "CTask": "DONE"}
    assert trace(tmp_path) == ["A", "B", "B", "C"]
    assert again.status_code == 409


async def test_a_task_longer_than_its_timeout_fails_and_flaky_tasks_are_retried_with_backoff(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    async with background_worker(fast(settings)):
        stuck = await submit(app_client, admin_headers, "StuckTask", abc_params(tmp_path, sleep_s=30))
        flaky = await submit(app_client, admin_headers, "FlakyTask", abc_params(tmp_path))
        timed_out = await settled(app_client, admin_headers, stuck["target"], timeout=20)
        recovered = await settled(app_client, admin_headers, flaky["target"], timeout=20)

    [task] = timed_out["tasks"]
    assert task["state"] == "FAILED" and "longer than its timeout of 1s" in task["error"]
    assert task["duration_s"] < 10
    assert recovered["job_status"] == "DONE" and recovered["tasks"][0]["attempts"] == 3
    assert trace(tmp_path).count("Flaky") == 3 and trace(tmp_path).count("Stuck") == 1


async def test_concurrent_submits_of_one_root_build_each_target_once(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    params = abc_params(tmp_path, sleep_s=0.3)
    async with background_worker(fast(settings)), background_worker(fast(settings)):
        answers = await asyncio.gather(*(submit(app_client, admin_headers, "CTask", params) for _ in range(4)))
        done = await settled(app_client, admin_headers, answers[0]["target"])

    assert len({a["run_id"] for a in answers}) == 4 and len({a["target"] for a in answers}) == 1
    assert states(done) == {"ATask": "DONE", "BTask": "DONE", "CTask": "DONE"}, done["tasks"]
    assert sorted(trace(tmp_path)) == ["A", "B", "C"]
    assert [t["attempts"] for t in done["tasks"]] == [1, 1, 1]


@pytest.mark.timeout(90)
async def test_a_sigkilled_workers_task_is_finished_by_another_worker(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], settings: TransformSettings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HEADWATER_ENVIRONMENT": "test",
        "HEADWATER_REDIS_URL": settings.redis_url,
        "HEADWATER_DATABASE_URL": settings.database_url,
        "HEADWATER_DATA_DIR": str(settings.data_dir),
        "HEADWATER_AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "HEADWATER_CHAIN_LEASE_S": "2",
        "HEADWATER_CHAIN_SWEEP_S": "0.3",
        "HEADWATER_CONSUME_REQUESTS": "false",
        "HEADWATER_LOG_JSON": "false",
    }
    arq_cli = str(Path(sys.executable).with_name("arq"))
    doomed = await asyncio.create_subprocess_exec(
        arq_cli,
        "services.transform.worker.WorkerSettings",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        submitted = await submit(app_client, admin_headers, "CTask", abc_params(tmp_path, sleep_s=4))

        async def _b_running() -> bool:
            body = await status(app_client, admin_headers, submitted["target"])
            return states(body)["BTask"] == "RUNNING"

        await wait_until(_b_running, timeout=40, message="the doomed worker did not start B")
    finally:
        doomed.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.wait(), timeout=10)
    async with background_worker(fast(settings)):
        done = await settled(app_client, admin_headers, submitted["target"], timeout=40)

    assert states(done) == {"ATask": "DONE", "BTask": "DONE", "CTask": "DONE"}
    assert trace(tmp_path) == ["A", "B", "B", "C"]  # B started again elsewhere; A was never rebuilt
    assert next(t["attempts"] for t in done["tasks"] if t["task"] == "BTask") == 2
