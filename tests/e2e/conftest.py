"""A whole mesh started by ``headwater up`` as real processes, on free ports, for the end-to-end tests."""

from __future__ import annotations

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
import redis as redis_sync

from headwater.config import SERVICES
from tests.conftest import REDIS_BASE_URL, REDIS_DB_BY_SUITE
from tests.helpers import free_port

# How long `up` may take to be ready (its HEADWATER_STARTUP_TIMEOUT_S); raise it on a crowded machine.
STARTUP_S = float(os.environ.get("HEADWATER_TEST_MESH_STARTUP_S", "60"))


@dataclass
class RunningMesh:
    """The ``headwater up`` process and how to reach what it started."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data_dir: Path
    urls: dict[str, str]
    ready_after_s: float
    console_url: str = ""
    child_pids: set[int] = field(default_factory=set)


def descendants(pid: int) -> set[int]:
    """Return every live descendant of ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    """Start ``headwater up`` with no AWS endpoint (so it starts its own emulator) and wait until it is ready."""
    data_dir = tmp_path_factory.mktemp("mesh")
    redis_url = f"{REDIS_BASE_URL}/{REDIS_DB_BY_SUITE['e2e']}"
    client = redis_sync.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HEADWATER_"))}
    env |= {
        "HEADWATER_DATA_DIR": str(data_dir),
        "HEADWATER_REDIS_URL": redis_url,
        "HEADWATER_MOTO_PORT": str(free_port()),
        "HEADWATER_SIMULATOR_PORT": str(free_port()),
        "HEADWATER_SIMULATED_DEVICES": "60",
        "HEADWATER_LOG_LEVEL": "INFO",
        # The console too gets a free port: several meshes (and other tests) run on this machine at once.
        "HEADWATER_CONSOLE_PORT": str(console_port := free_port()),
        "HEADWATER_STARTUP_TIMEOUT_S": str(STARTUP_S),
    }
    urls = {}
    for service in SERVICES:
        port = free_port()
        env[f"HEADWATER_{service.upper()}_PORT"] = str(port)
        urls[service] = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "headwater.main", "up"],
        env=env,
        stdout=(data_dir / "up.out").open("wb"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    running = RunningMesh(
        process=process,
        env=env,
        data_dir=data_dir,
        urls=urls,
        ready_after_s=0.0,
        console_url=f"http://127.0.0.1:{console_port}",
    )
    try:
        deadline = started + STARTUP_S + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"headwater up exited early:\n{(data_dir / 'up.out').read_text()[-4000:]}")
            if _all_ready(urls) and b"Ctrl-C stops everything" in (data_dir / "up.out").read_bytes():
                break
            if time.monotonic() > deadline:
                tail = (data_dir / "up.out").read_text()[-4000:]
                raise AssertionError(f"mesh not ready in {STARTUP_S + 30:.0f} s:\n{tail}")
            time.sleep(0.25)
        running.ready_after_s = time.monotonic() - started
        running.child_pids = descendants(process.pid)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _all_ready(urls: dict[str, str]) -> bool:
    try:
        return all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200 for url in urls.values())
    except httpx.HTTPError:
        return False
