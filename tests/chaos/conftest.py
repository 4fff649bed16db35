"""One whole mesh for the chaos scenarios: ``headwater up`` on free ports and a temporary data dir, in front of
infrastructure the scenarios can break (its own redis-server, the moto server behind a fault proxy, the ingest
spool on a small tmpfs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from headwater.config import SERVICES, CliSettings
from tests.chaos.faults import FaultProxy, RedisServer, mount_tmpfs, unmount
from tests.e2e.conftest import descendants
from tests.helpers import free_port, wait_until_sync

# Small enough to fill in a moment, large enough for the load of a scenario while the archive is away.
SPOOL_DISK_SIZE = "24m"
SIMULATED_DEVICES = 20


@dataclass
class ChaosMesh:
    """The running mesh and the handles the scenarios break it with."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    urls: dict[str, str]
    admin_key: str
    redis: RedisServer
    proxy: FaultProxy
    moto_url: str
    spool_disk: Path | None
    spool_disk_error: str | None
    settings: CliSettings  # the scoreboard's view: AWS straight at the emulator, never through the fault proxy
    meters: list[str] = field(default_factory=list)  # simulated meters registered with the poller

    @property
    def database(self) -> Path:
        """Return the SQLite metadata database."""
        return self.data_dir / "headwater.db"

    @property
    def headers(self) -> dict[str, str]:
        """Return the admin key's Authorization header."""
        return {"Authorization": f"Bearer {self.admin_key}"}

    def pid_of(self, name: str) -> int | None:
        """Return the pid of a service's API (``ingest``) or worker (``loader-worker``) started by ``up``."""
        service = name.removesuffix("-worker")
        needle = f"services.{service}.worker.WorkerSettings" if name.endswith("-worker") else f"services.{service}.app"
        for pid in descendants(self.process.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmdline:
                return pid
        return None

    def ready(self) -> bool:
        """Return whether every API answers /readyz with 200."""
        try:
            return all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200 for url in self.urls.values())
        except httpx.HTTPError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of ``up``'s own output (for failure messages)."""
        return (self.data_dir / "up.out").read_text(errors="replace")[-chars:]


@pytest.fixture(scope="session")
def chaos_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosMesh]:
    """Start the infrastructure and ``headwater up``; stop all of it afterwards."""
    data_dir = tmp_path_factory.mktemp("chaos")
    redis = RedisServer(data_dir / "redis-data")
    redis.start()
    moto_port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=(data_dir / "moto.out").open("wb"),
        stderr=subprocess.STDOUT,
    )
    moto_url = f"http://127.0.0.1:{moto_port}"
    proxy = FaultProxy(moto_port)
    proxy.start()
    spool_disk = data_dir / "ingest" / "spool"
    spool_disk_error = mount_tmpfs(spool_disk, SPOOL_DISK_SIZE)
    process = None
    try:
        wait_until_sync(lambda: _http_ok(f"{moto_url}/moto-api/"), timeout=30, message="moto did not start")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HEADWATER_"))}
        env |= {
            "HEADWATER_DATA_DIR": str(data_dir),
            "HEADWATER_REDIS_URL": redis.url,
            "HEADWATER_AWS_ENDPOINT_URL": proxy.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "HEADWATER_MOTO_PORT": str(moto_port),
            "HEADWATER_SIMULATOR_PORT": str(free_port()),
            "HEADWATER_CONSOLE_PORT": str(free_port()),
            "HEADWATER_SIMULATED_DEVICES": str(SIMULATED_DEVICES),
            "HEADWATER_LOG_LEVEL": "INFO",
            "HEADWATER_STARTUP_TIMEOUT_S": "120",
        }
        urls = {}
        for service in SERVICES:
            port = free_port()
            env[f"HEADWATER_{service.upper()}_PORT"] = str(port)
            urls[service] = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "headwater.main", "up"],
            env=env,
            stdout=(data_dir / "up.out").open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 150
        while b"Ctrl-C stops everything" not in (data_dir / "up.out").read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"headwater up did not start:\n{(data_dir / 'up.out').read_text()[-4000:]}")
            time.sleep(0.25)
        runtime = json.loads((data_dir / "mesh.json").read_text())
        settings = CliSettings(
            data_dir=data_dir,
            aws_endpoint_url=moto_url,
            redis_url=redis.url,
            database_url=runtime["HEADWATER_DATABASE_URL"],
            **{f"{s}_port": int(urls[s].rsplit(":", 1)[1]) for s in SERVICES},
        )
        mesh = ChaosMesh(
            process=process,
            data_dir=data_dir,
            urls=urls,
            admin_key=(data_dir / "admin.key").read_text().strip(),
            redis=redis,
            proxy=proxy,
            moto_url=moto_url,
            spool_disk=None if spool_disk_error else spool_disk,
            spool_disk_error=spool_disk_error,
            settings=settings,
        )
        wait_until_sync(mesh.ready, timeout=60, message="services not ready")
        mesh.meters = register_fleet(mesh)
        yield mesh
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        proxy.stop()
        moto.terminate()
        moto.wait(15)
        redis.stop()
        if not spool_disk_error:
            unmount(spool_disk)


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def register_fleet(mesh: ChaosMesh) -> list[str]:
    """Register every working meter of the simulated fleet with the poller; return their cloud ids."""
    fleet = [json.loads(line) for line in (mesh.data_dir / "simulated-devices.jl").read_text().splitlines() if line]
    keys = ("cloud_id", "owner_email", "eagle_password", "protocol", "host")
    devices = [{k: d[k] for k in keys if d.get(k) is not None} for d in fleet if d.get("mode") == "ok"]
    response = httpx.post(
        f"{mesh.urls['poller']}/v1/devices",
        params={"upsert": "true"},
        json={"devices": devices},
        headers=mesh.headers,
        timeout=60,
    )
    assert response.status_code in (200, 201), response.text
    return [d["cloud_id"] for d in devices]
