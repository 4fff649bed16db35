"""What several benchmarks start: a moto server, a real ingest app with its own API key, free ports, RSS/CPU.

Every process gets a private data dir, resource prefix and (unless given) a private Redis database, so a benchmark
never touches a mesh someone runs by hand or another benchmark's keys. Children die with the benchmark
(PR_SET_PDEATHSIG), and ``Stack.stop`` sends SIGTERM, then SIGKILL to what is left.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """Return a TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def cpu_seconds(pid: int) -> float:
    """Return a process's user+system CPU seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> tuple[float, float]:
    """Return a process's (current, peak) resident set in MiB, from /proc (0, 0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    values = {
        line.split(":")[0]: int(line.split()[1]) / 1024
        for line in status.splitlines()
        if line[:6] in ("VmRSS:", "VmHWM:")
    }
    return round(values.get("VmRSS", 0.0), 1), round(values.get("VmHWM", 0.0), 1)


def wait_http(url: str, timeout: float, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200; raise after ``timeout`` or when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@dataclass
class Stack:
    """The processes a benchmark started, and the environment they share."""

    home: Path
    redis_url: str
    prefix: str
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` with the stack's environment; its output goes to <home>/<name>.log."""
        log = (self.home / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def headwater(self, *args: str) -> str:
        """Run a ``headwater`` command against the stack; return its standard output."""
        done = subprocess.run(
            [sys.executable, "-m", "headwater.main", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"headwater {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def start_moto(self) -> str:
        """Start a moto server on a free port; return its endpoint (also exported to every later child)."""
        port = free_port()
        proc = self.spawn("moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/", 60, process=proc)
        self.env |= {"AWS_ENDPOINT_URL": endpoint, "HEADWATER_AWS_ENDPOINT_URL": endpoint}
        return endpoint

    def start_ingest(self) -> tuple[str, str]:
        """Bootstrap the AWS resources and tables, create an ingest:write key, start ingest; return (url, key)."""
        self.headwater("bootstrap")
        key = self.headwater("keys", "create", "--scope", "ingest:write", "--name", "bench").strip()
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "--factory", "services.ingest.app:create_app"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
        # As `headwater up` runs it: a server process may tune the process-wide GC.
        proc = self.spawn("ingest", argv, {"HEADWATER_GC_TUNING": "true"})
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", 90, process=proc)
        return url, key

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every child (newest first), wait ``grace``, SIGKILL the rest."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def new_stack(home: Path, redis_url: str, prefix: str) -> Stack:
    """Return a stack rooted in ``home`` (SQLite, spool, logs) using ``redis_url`` and ``prefix``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HEADWATER_REDIS_URL": redis_url,
        "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'headwater.db'}",
        "HEADWATER_DATA_DIR": str(home),
        "HEADWATER_RESOURCE_PREFIX": prefix,
        "HEADWATER_ENVIRONMENT": "local",
        "HEADWATER_LOG_LEVEL": "WARNING",
    }
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    return Stack(home=home, redis_url=redis_url, prefix=prefix, env=env)
