"""Each compose container's command and healthcheck, run for real as the container would run them.

The processes get the compose file's environment with only the host names pointed at this machine's Redis,
Postgres and moto server, and the API port moved to a free one. A container whose module is not written yet is
skipped (with the reason); every other one must pass its own healthcheck and stop promptly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis import Redis

from tests.conftest import POSTGRES_DSN, REDIS_BASE_URL, REDIS_DB_BY_SUITE
from tests.deploy.conftest import REPO_ROOT
from tests.helpers import free_port, wait_until_sync

API_PORTS = {"ingest": 8001, "transform": 8002, "loader": 8003, "replay": 8004, "poller": 8005}
WORKERS = ("transform", "loader", "replay", "poller")
STOP_GRACE_S = 30  # the compose file's stop_grace_period
GRACEFUL_EXIT = {0, -signal.SIGTERM}  # uvicorn re-raises SIGTERM after its graceful shutdown

pytestmark = pytest.mark.timeout(120)


def _executable(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed next to {sys.executable}"
    return found


def _command(argv: list[str]) -> list[str]:
    return [_executable(argv[0]), *argv[1:]]


def _create_database() -> tuple[str, str]:
    name = f"hw_deploy_{uuid.uuid4().hex[:12]}"

    async def _create() -> None:
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(_create())
    return name, f"{POSTGRES_DSN.rsplit('/', 1)[0]}/{name}"


def _drop_database(name: str) -> None:
    async def _drop() -> None:
        admin = await asyncpg.connect(POSTGRES_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(_drop())


def _flush(redis_url: str) -> None:
    with Redis.from_url(redis_url) as client:
        client.flushdb()


@pytest.fixture(scope="module")
def container_env(
    compose_config: dict[str, Any], moto_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Return the compose environment pointed at local services, after running migrate and bootstrap."""
    redis_url = f"{REDIS_BASE_URL}/{REDIS_DB_BY_SUITE['deploy']}"
    _flush(redis_url)
    name, postgres_url = _create_database()
    base = {key: value for key, value in os.environ.items() if not key.startswith(("HEADWATER_", "AWS_"))}
    env = base | compose_config["services"]["bootstrap"]["environment"]
    env |= {
        "HEADWATER_DATABASE_URL": postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "HEADWATER_REDIS_URL": redis_url,
        "AWS_ENDPOINT_URL": moto_server,
        "HEADWATER_DATA_DIR": str(tmp_path_factory.mktemp("container-data")),
        "HEADWATER_RESOURCE_PREFIX": "hwc",
    }
    try:
        for step in ("migrate", "bootstrap"):
            command = _command(compose_config["services"][step]["command"])
            result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=90)
            assert result.returncode == 0, result.stderr
        yield env
    finally:
        _drop_database(name)
        _flush(redis_url)


def _skip_unless_written(module: str) -> None:
    path = REPO_ROOT / Path(*module.split(".")).with_suffix(".py")
    if not path.exists():
        pytest.skip(f"{module} is not written yet, so its container cannot start")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"did not stop within {STOP_GRACE_S}s of SIGTERM:\n{output[-2000:]}") from None
    return output


@pytest.mark.parametrize("service", sorted(API_PORTS))
def test_api_container_passes_its_readyz_healthcheck(
    service: str, compose_config: dict[str, Any], container_env: dict[str, str]
) -> None:
    _skip_unless_written(f"services.{service}.app")
    spec = compose_config["services"][service]
    port = str(free_port())
    command = list(spec["command"])
    command[command.index("--port") + 1] = port
    command[command.index("--host") + 1] = "127.0.0.1"
    healthcheck = [part.replace(f":{API_PORTS[service]}/", f":{port}/") for part in spec["healthcheck"]["test"][1:]]
    assert healthcheck != spec["healthcheck"]["test"][1:], "the healthcheck does not probe the API's own port"

    process = subprocess.Popen(
        _command(command), env=container_env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:

        def ready() -> bool:
            assert process.poll() is None, f"{service} exited early"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until_sync(ready, timeout=30, interval=0.2, message=f"{service} /readyz")
        # Then the container's own healthcheck command, exactly as Docker would run it.
        check = subprocess.run(_command(healthcheck), env=container_env, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    finally:
        output = _stop(process) if process.poll() is None else process.communicate()[0]
    assert process.returncode in GRACEFUL_EXIT, output[-2000:]
    assert "Application shutdown complete" in output


@pytest.mark.parametrize("service", WORKERS)
def test_worker_container_passes_its_arq_check(
    service: str, compose_config: dict[str, Any], container_env: dict[str, str]
) -> None:
    _skip_unless_written(f"services.{service}.worker")
    spec = compose_config["services"][f"{service}-worker"]
    check = _command(spec["healthcheck"]["test"][1:])
    assert subprocess.run(check, env=container_env, capture_output=True).returncode != 0, "healthy before it ran"

    process = subprocess.Popen(
        _command(spec["command"]),
        env=container_env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # arq's queue is settings.arq_queue ("arq:<prefix>:<service>"); its worker refreshes "<queue>:health-check".
    health_key = f"arq:{container_env['HEADWATER_RESOURCE_PREFIX']}:{service}:health-check"
    redis = Redis.from_url(container_env["HEADWATER_REDIS_URL"])
    try:

        def recorded_health() -> bool:
            assert process.poll() is None, f"{service} worker exited early"
            return bool(redis.exists(health_key))

        wait_until_sync(recorded_health, timeout=30, interval=0.2, message=f"{service} worker health-check key")
        result = subprocess.run(check, env=container_env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        redis.close()
        output = _stop(process) if process.poll() is None else process.communicate()[0]
    assert process.returncode in GRACEFUL_EXIT, output[-2000:]
