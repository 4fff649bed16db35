"""A fleet of simulated Rainforest Eagles behind one async HTTP server (the cloud API's shape).

Each device has deterministic credentials and a behaviour: ``ok``, ``auth`` (refuses every
credential), ``hang`` (answers long after any client timeout), ``error`` (HTTP 503) or ``slow``
(answers late but within a timeout). ``fail_rate`` spreads the failing behaviours over the fleet.
Control routes (``/sim/...``) let tests and operators list fixtures and change behaviours live.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from services.poller.devices.eagle import POST_MANAGER

MODES = ("ok", "auth", "hang", "error", "slow")
FAILING_MODES = ("auth", "hang", "error", "slow")
_EAGLE_EPOCH_UNIX = 946684800
_NAME = re.compile(rb"<Name>\s*([A-Za-z_]+)\s*</Name>")
_MODE_PATH = re.compile(r"^/sim/devices/([A-Za-z0-9_-]+)/mode$")


def parse_latency(text: str) -> tuple[float, float]:
    """Parse "20-80ms", "50ms" or "0.02-0.08" (seconds) into (low, high) seconds."""
    value = text.strip().lower()
    scale = 0.001 if value.endswith("ms") else 1.0
    value = value.removesuffix("ms").removesuffix("s")
    low, _, high = value.partition("-")
    return float(low) * scale, float(high or low) * scale


def device_credentials(cloud_id: str) -> tuple[str, str]:
    """Return the (user, password) a simulated device accepts."""
    return f"eagle-{cloud_id}@example.com", f"install-{zlib.crc32(cloud_id.encode()):08x}"


@dataclass
class SimulatedDevice:
    """One simulated Eagle."""

    cloud_id: str
    user: str
    password: str
    mode: str = "ok"
    base_watts: int = 500


@dataclass
class SimulatedFleet:
    """Thousands of Eagles answering on one ASGI app."""

    count: int
    latency: tuple[float, float] = (0.02, 0.08)
    fail_rate: float = 0.0
    seed: int = 0
    hang_s: float = 30.0
    slow: tuple[float, float] = (1.0, 2.5)
    id_width: int = 6
    record_times: bool = False
    devices: dict[str, SimulatedDevice] = field(init=False)
    requests: Counter[str] = field(init=False, default_factory=Counter)
    times: dict[str, list[float]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.devices = {}
        for number in range(self.count):
            cloud_id = f"{number:0{self.id_width}d}"
            user, password = device_credentials(cloud_id)
            mode = rng.choice(FAILING_MODES) if rng.random() < self.fail_rate else "ok"
            self.devices[cloud_id] = SimulatedDevice(cloud_id, user, password, mode, 200 + rng.randrange(3000))

    def set_mode(self, cloud_id: str, mode: str) -> None:
        """Change one device's behaviour."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.devices[cloud_id].mode = mode

    def fixtures(self) -> list[dict[str, Any]]:
        """Return registration records (JSON-lines friendly) for every device."""
        return [
            {"cloud_id": d.cloud_id, "owner_email": d.user, "eagle_password": d.password, "mode": d.mode}
            for d in self.devices.values()
        ]

    def answer(self, device: SimulatedDevice, command: str) -> dict[str, Any]:
        """Return the JSON answer of ``command`` for ``device`` now."""
        now = time.time()
        stamp = f"0x{int(now) - _EAGLE_EPOCH_UNIX:08x}"
        watts = device.base_watts + int(now) % 250
        demand = {
            "DeviceMacId": f"0xd8d5b900{zlib.crc32(device.cloud_id.encode()):08x}",
            "TimeStamp": stamp,
            "Demand": f"0x{watts:06x}",
            "Multiplier": "0x00000001",
            "Divisor": "0x000003e8",
            "DigitsRight": "0x03",
            "DigitsLeft": "0x0f",
            "SuppressLeadingZero": "Y",
        }
        delivered = device.base_watts * 10_000 + int(now / 6)
        summation = {
            "TimeStamp": stamp,
            "SummationDelivered": f"0x{delivered:012x}",
            "SummationReceived": "0x000000000000",
            "Multiplier": "0x00000001",
            "Divisor": "0x000003e8",
        }
        if command == "get_instantaneous_demand":
            return {"InstantaneousDemand": demand}
        if command == "get_current_summation":
            return {"CurrentSummation": summation}
        return {
            "NetworkInfo": {"Status": "Connected", "LinkStrength": "0x64"},
            "InstantaneousDemand": demand,
            "CurrentSummation": summation,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if path == POST_MANAGER and method == "POST":
            status, payload = await self._post_manager(dict(scope["headers"]), body)
        elif path == "/sim/devices" and method == "GET":
            status, payload = 200, orjson.dumps(self.fixtures())
        elif path == "/sim/stats" and method == "GET":
            status, payload = 200, orjson.dumps({"devices": self.count, "requests": sum(self.requests.values())})
        elif (match := _MODE_PATH.match(path)) and method == "PUT":
            try:
                self.set_mode(match.group(1), orjson.loads(body)["mode"])
                status, payload = 200, b'{"ok": true}'
            except (KeyError, ValueError, orjson.JSONDecodeError):
                status, payload = 400, b'{"error": "unknown device or mode"}'
        else:
            status, payload = 404, b'{"error": "not found"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _post_manager(self, headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
        cloud_id = headers.get(b"cloud-id", b"").decode()
        device = self.devices.get(cloud_id)
        self.requests[cloud_id] += 1
        if self.record_times:
            self.times.setdefault(cloud_id, []).append(time.monotonic())
        if (
            device is None
            or device.mode == "auth"
            or headers.get(b"user", b"").decode() != device.user
            or headers.get(b"password", b"").decode() != device.password
        ):
            return 401, b"Unauthorized"
        await asyncio.sleep(random.uniform(*self.latency))
        if device.mode == "hang":
            await asyncio.sleep(self.hang_s)
            return 504, b"Gateway Timeout"
        if device.mode == "error":
            return 503, b"Service Unavailable"
        if device.mode == "slow":
            await asyncio.sleep(random.uniform(*self.slow))
        match = _NAME.search(body)
        command = match.group(1).decode() if match else ""
        return 200, orjson.dumps(self.answer(device, command))


def simulator_server(fleet: SimulatedFleet, *, host: str = "127.0.0.1", port: int = 8090) -> uvicorn.Server:
    """Return a uvicorn server for the fleet (call ``await server.serve()``)."""
    config = uvicorn.Config(
        fleet,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        backlog=4096,
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)
