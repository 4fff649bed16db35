"""Worker replicas: each one's liveness is its own, and SIGTERM lets the job in hand finish."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings, create_pool
from arq.jobs import Job, JobStatus
from arq.worker import Worker, async_check_health
from redis.asyncio import Redis

from shared.worker_process import build_worker, heartbeat_file, replica_alive, replica_health_key, settings_path
from tests.helpers import wait_until

QUEUE = "hw-test:replicas"


async def slow_job(ctx: dict[str, Any], seconds: float) -> str:
    """Sleep, then say so (a job still in hand when its worker is told to stop)."""
    await asyncio.sleep(seconds)
    return "finished"


def _settings(redis_url: str) -> type:
    return type(
        "WorkerSettings",
        (),
        {
            "functions": [slow_job],
            "queue_name": QUEUE,
            "redis_settings": RedisSettings.from_dsn(redis_url),
            "health_check_interval": 1,
            "poll_delay": 0.05,
        },
    )


async def _start(worker: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(worker.async_run())
    return task


async def _stop(worker: Worker, task: asyncio.Task[None]) -> None:
    """Send the worker the SIGTERM handling arq installs, then wait for its loop to end."""
    if worker._job_completion_wait:
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
    else:
        worker.handle_sig(signal.SIGTERM)
    try:
        await asyncio.wait_for(task, timeout=20)
    except asyncio.CancelledError:
        pass
    await worker.close()


async def test_plain_arq_shares_one_health_key_so_stopping_one_replica_fails_the_others(
    redis_url: str, redis: Redis
) -> None:
    """The bug being fixed: `arq --check` of a surviving replica fails once any replica stopped."""
    settings = _settings(redis_url)
    workers = [Worker(**{k: v for k, v in vars(settings).items() if not k.startswith("_")}) for _ in range(2)]
    tasks = [await _start(w) for w in workers]
    redis_settings = RedisSettings.from_dsn(redis_url)
    await wait_until(lambda: redis.exists(workers[0].health_check_key), message="arq health key")
    await _stop(workers[0], tasks[0])
    # The survivor looks dead to its probe.
    assert await async_check_health(redis_settings, health_check_key=workers[1].health_check_key) == 1
    await _stop(workers[1], tasks[1])


async def test_each_replica_has_its_own_health_key_and_survives_another_stopping(redis_url: str, redis: Redis) -> None:
    """Stopping replica a leaves replica b alive to its probe; a's own probe then fails."""
    settings = _settings(redis_url)
    a, b = build_worker(settings, replica="a"), build_worker(settings, replica="b")
    assert a.health_check_key == replica_health_key(QUEUE, "a") != b.health_check_key
    task_a, task_b = await _start(a), await _start(b)

    async def both_alive() -> bool:
        return await replica_alive(settings, "a") and await replica_alive(settings, "b")

    await wait_until(both_alive, message="both replicas' health keys")
    await _stop(a, task_a)
    assert not await replica_alive(settings, "a")
    assert await replica_alive(settings, "b")
    await _stop(b, task_b)


async def test_sigterm_lets_the_job_in_hand_finish(redis_url: str, redis: Redis, monkeypatch: Any) -> None:
    """A worker told to stop while a job runs finishes that job (job_completion_wait) instead of cancelling it."""
    monkeypatch.setenv("HEADWATER_WORKER_SHUTDOWN_WAIT_S", "10")
    worker = build_worker(_settings(redis_url), replica="graceful")
    task = await _start(worker)
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE)
    try:
        job = await pool.enqueue_job("slow_job", 1.5)
        assert isinstance(job, Job)

        async def in_progress() -> bool:
            return await job.status() == JobStatus.in_progress

        await wait_until(in_progress, message="job started")
        await _stop(worker, task)
        assert await job.result(timeout=5) == "finished"
    finally:
        await pool.aclose()


def _probe(settings: type, heartbeat_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the container's healthcheck command for ``settings``, reporting every module it imports."""
    env = os.environ | {"HEADWATER_WORKER_HEARTBEAT_DIR": str(heartbeat_dir), "HEADWATER_WORKER_HEALTH_INTERVAL_S": "1"}
    argv = [sys.executable, "-X", "importtime", "-m", "shared.worker_process", "check", settings_path(settings)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


async def test_the_probe_reads_the_replicas_heartbeat_and_imports_neither_arq_nor_the_service(
    redis_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """The check passes while the replica records its health and fails once it stopped, with stdlib imports only.

    The bug: the check imported the service's WorkerSettings (the whole service) and asked Redis; in containers on
    a busy host that took over a minute, so compose marked healthy workers unhealthy. The settings class here is
    not importable by its path at all, so only a check that never imports it can pass.
    """
    monkeypatch.setenv("HEADWATER_WORKER_HEARTBEAT_DIR", str(tmp_path))
    settings = _settings(redis_url)
    worker = build_worker(settings, replica="probe")

    async def beating() -> bool:
        return heartbeat_file(settings).exists()

    task = await _start(worker)
    try:
        await wait_until(beating, message="heartbeat file")
        alive = await asyncio.to_thread(_probe, settings, tmp_path)
        assert alive.returncode == 0, alive.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in alive.stderr.splitlines() if line.startswith("import")}
        assert not {name for name in imported if name.split(".")[0] in {"arq", "redis", "tests", "services"}}
    finally:
        await _stop(worker, task)

    async def probe_fails() -> bool:
        return (await asyncio.to_thread(_probe, settings, tmp_path)).returncode == 1

    await wait_until(probe_fails, timeout=15, message="the probe of a stopped replica fails")
