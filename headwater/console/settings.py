"""What the console process reads (env prefix HEADWATER_)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import SERVICE_PORTS, HeadwaterSettings


def _local_upstreams() -> dict[str, str]:
    return {name: f"http://127.0.0.1:{port}" for name, port in SERVICE_PORTS.items()}


class ConsoleSettings(HeadwaterSettings):
    """Where each service answers (``HEADWATER_CONSOLE_UPSTREAMS`` as JSON) and how long the proxy waits."""

    service_name: str = "console"
    console_upstreams: dict[str, str] = Field(default_factory=_local_upstreams)
    # Public links shown beside each service (its own address) when different from the proxied one; optional.
    console_connect_timeout_s: float = 5.0
    # Reads have no timeout: server-sent event streams (chains, progress) stay open as long as the page does.
    console_write_timeout_s: float = 60.0
