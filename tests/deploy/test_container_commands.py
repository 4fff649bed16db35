"""Each compose container's command and healthcheck, run for real as the container would run them.

The processes get the compose file's environment with only the host names pointed at a private redis-server,
this machine's Postgres (a fresh database) and the session's moto server, and the API port moved to a free one.
A container whose module is not written yet is skipped (with the reason); every other one must pass its own
healthcheck and stop gracefully on SIGTERM.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
from redis import Redis
from redis.exceptions import RedisError

from shared.settings import SERVICE_PORTS
from shared.worker_process import replica_health_key
from tests.conftest import POSTGRES_DSN
from tests.deploy.conftest import REPO_ROOT
from tests.helpers import free_port, wait_until_sync

API_PORTS = SERVICE_PORTS
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


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a Redis of our own: arq health keys must not meet a concurrent test run's FLUSHDB."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        try:
            with Redis.from_url(url, socket_timeout=1) as client:
                return bool(client.ping())
        except RedisError:
            return False

    try:
        wait_until_sync(answers, timeout=10, message="private redis-server")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def container_env(
    compose_config: dict[str, Any],
    moto_server: str,
    private_redis: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Return the compose environment pointed at local services, after running migrate and bootstrap."""
    name, postgres_url = _create_database()
    base = {key: value for key, value in os.environ.items() if not key.startswith(("HEADWATER_", "AWS_"))}
    env = base | compose_config["services"]["bootstrap"]["environment"]
    env |= {
        "HEADWATER_DATABASE_URL": postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "HEADWATER_REDIS_URL": private_redis,
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


@dataclass
class Container:
    """One compose container's process, started as Docker would start it (the API on a free port)."""

    name: str
    spec: dict[str, Any]
    process: subprocess.Popen[bytes] | None
    log: Path
    port: int | None = None

    def output(self) -> str:
        """Return what the process printed so far."""
        return self.log.read_text(errors="replace")[-3000:]

    def assert_alive(self) -> None:
        """Fail with the process output when it has exited."""
        assert self.process is not None
        assert self.process.poll() is None, f"{self.name} exited early:\n{self.output()}"

    def stop(self) -> int:
        """Send SIGTERM like `docker stop` and return the exit status; fail when it outlives the grace period."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {STOP_GRACE_S}s:\n{self.output()}") from None


def _written(module: str) -> bool:
    return (REPO_ROOT / Path(*module.split("."))).with_suffix(".py").exists()


@pytest.fixture(scope="module")
def containers(
    compose_config: dict[str, Any], container_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Container]]:
    """Start every API and worker container at once (start-up is mostly imports: two cores do it in half the time)."""
    logs = tmp_path_factory.mktemp("container-logs")
    started: dict[str, Container] = {}
    with Redis.from_url(container_env["HEADWATER_REDIS_URL"]) as redis:
        assert not redis.keys("*health-check"), "a worker looked healthy before any worker ran"
    for service in API_PORTS:
        spec = compose_config["services"][service]
        container = Container(service, spec, None, logs / f"{service}.log", free_port())
        if _written(f"services.{service}.app"):
            command = list(spec["command"])
            command[command.index("--port") + 1] = str(container.port)
            command[command.index("--host") + 1] = "127.0.0.1"
            container.process = _start(command, container_env, container.log)
        started[service] = container
    for service in WORKERS:
        name = f"{service}-worker"
        spec = compose_config["services"][name]
        container = Container(name, spec, None, logs / f"{name}.log")
        if _written(f"services.{service}.worker"):
            container.process = _start(spec["command"], container_env, container.log)
        started[name] = container
    try:
        yield started
    finally:
        for container in started.values():
            if container.process is not None and container.process.poll() is None:
                container.process.kill()
                container.process.wait()


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(_command(argv), env=env, cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)


def test_compose_one_shots_prepared_postgres_and_the_emulator(container_env: dict[str, str], moto_server: str) -> None:
    async def tables() -> set[str]:
        url = container_env["HEADWATER_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await connection.close()
        return {row["tablename"] for row in rows}

    assert "api_key" in asyncio.run(tables())
    s3 = boto3.client(
        "s3", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    buckets = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    assert {"hwc-raw", "hwc-curated", "hwc-replay"} <= buckets


@pytest.mark.parametrize("service", sorted(API_PORTS))
def test_api_container_passes_its_readyz_healthcheck_and_stops_on_sigterm(
    service: str, containers: dict[str, Container], container_env: dict[str, str]
) -> None:
    container = containers[service]
    if container.process is None:
        pytest.skip(f"services.{service}.app is not written yet, so its container cannot start")
    test = container.spec["healthcheck"]["test"][1:]
    healthcheck = [part.replace(f":{API_PORTS[service]}/", f":{container.port}/") for part in test]
    assert healthcheck != test, "the healthcheck does not probe the API's own port"

    def ready() -> bool:
        container.assert_alive()
        try:
            return httpx.get(f"http://127.0.0.1:{container.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until_sync(ready, timeout=60, interval=0.2, message=f"{service} /readyz")
    # Then the container's own healthcheck command, exactly as Docker would run it.
    check = subprocess.run(_command(healthcheck), env=container_env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert container.stop() in GRACEFUL_EXIT, container.output()
    assert "Application shutdown complete" in container.output()


@pytest.mark.parametrize("service", WORKERS)
def test_worker_container_passes_its_arq_check_and_stops_on_sigterm(
    service: str, containers: dict[str, Container], container_env: dict[str, str]
) -> None:
    container = containers[f"{service}-worker"]
    if container.process is None:
        pytest.skip(f"services.{service}.worker is not written yet, so its container cannot start")
    # arq's queue is settings.arq_queue ("arq:<prefix>:<service>"); each replica refreshes its own key,
    # "<queue>:health-check:<host name>" (shared.worker_process), which the healthcheck command reads.
    health_key = replica_health_key(f"arq:{container_env['HEADWATER_RESOURCE_PREFIX']}:{service}")
    with Redis.from_url(container_env["HEADWATER_REDIS_URL"]) as redis:

        def recorded_health() -> bool:
            container.assert_alive()
            return bool(redis.exists(health_key))

        wait_until_sync(recorded_health, timeout=60, interval=0.2, message=f"{service} worker health-check key")
    check = subprocess.run(
        _command(container.spec["healthcheck"]["test"][1:]), env=container_env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert container.stop() in GRACEFUL_EXIT, container.output()
