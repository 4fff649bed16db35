"""``headwater up``'s console process: served on the configured port, or on a free one when that port is taken (so
meshes and tests on one machine never collide), and the services are told where it is."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx

from headwater.config import SERVICES, CliSettings
from headwater.mesh import Mesh
from tests.helpers import free_port, wait_until_sync


def _start(settings: CliSettings) -> tuple[Mesh, str]:
    mesh = Mesh(settings, echo=False)
    url = mesh.start_console()
    (child,) = mesh.children
    wait_until_sync(lambda: mesh.child_ready(child), timeout=60, message="console not ready")
    return mesh, url


def test_the_console_takes_its_configured_port_and_tells_the_services(tmp_path: Path) -> None:
    port = free_port()
    mesh, url = _start(CliSettings(data_dir=tmp_path, console_port=port))
    try:
        assert url == f"http://127.0.0.1:{port}"
        assert mesh.env["HEADWATER_CONSOLE_URL"] == url
        upstreams = json.loads(mesh.env["HEADWATER_CONSOLE_UPSTREAMS"])
        assert list(upstreams) == list(SERVICES)
        assert httpx.get(f"{url}/console/config", timeout=10).json()["services"][0]["name"] == SERVICES[0]
    finally:
        mesh.stop(grace=5)


def test_a_taken_console_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        mesh, url = _start(CliSettings(data_dir=tmp_path, console_port=busy))
        try:
            assert url != f"http://127.0.0.1:{busy}"
            assert httpx.get(f"{url}/readyz", timeout=10).json()["service"] == "console"
        finally:
            mesh.stop(grace=5)
