"""Settings of the command line: where the mesh runs locally and how to reach it."""

from __future__ import annotations

from pathlib import Path

from shared.settings import SERVICE_PORTS, HeadwaterSettings

SERVICES = tuple(SERVICE_PORTS)


class CliSettings(HeadwaterSettings):
    """What ``headwater up`` / ``demo`` / ``status`` read (env prefix HEADWATER_)."""

    service_name: str = "cli"
    host: str = "127.0.0.1"
    moto_port: int = 4566
    ingest_port: int = SERVICE_PORTS["ingest"]
    transform_port: int = SERVICE_PORTS["transform"]
    loader_port: int = SERVICE_PORTS["loader"]
    replay_port: int = SERVICE_PORTS["replay"]
    poller_port: int = SERVICE_PORTS["poller"]
    # The console: every page and, under /api/<service>/, every API on one origin (HEADWATER_CONSOLE_PORT).
    console_port: int = 8000
    startup_timeout_s: float = 60.0
    # Locally the poller reads a simulated fleet of Rainforest Eagles (0 disables it: the poller then talks to
    # the real Rainforest cloud). Its registration records are written to <data_dir>/simulated-devices.jl.
    simulated_devices: int = 200
    simulator_port: int = 8090

    def port(self, service: str) -> int:
        """Return the port of ``service``."""
        return int(getattr(self, f"{service}_port"))

    def service_url(self, service: str) -> str:
        """Return the base URL of ``service``."""
        return f"http://{self.host}:{self.port(service)}"

    @property
    def console_url(self) -> str:
        """Return the console's base URL."""
        return f"http://{self.host}:{self.console_port}"

    @property
    def home(self) -> Path:
        """Return the absolute data directory (spool, SQLite, logs, warehouse, admin key)."""
        return self.data_dir.resolve()

    @property
    def simulated_devices_file(self) -> Path:
        """Return where the simulated fleet's registration records (with credentials) are kept."""
        return self.home / "simulated-devices.jl"

    @property
    def admin_key_file(self) -> Path:
        """Return where the local admin key is kept (mode 0600)."""
        return self.home / "admin.key"


def read_admin_key(settings: CliSettings) -> str | None:
    """Return the local admin key, or None when ``up`` has not created one yet."""
    try:
        return settings.admin_key_file.read_text().strip() or None
    except FileNotFoundError:
        return None
