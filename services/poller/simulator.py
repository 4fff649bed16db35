"""A fleet of simulated Rainforest Eagles speaking the three real protocols, behind one async HTTP server.

- ``cloud`` devices answer on the server's main address, as the Rainforest cloud does: ``POST
  /cgi-bin/post_manager`` with ``Cloud-ID``/``User``/``Password`` headers and REST API 1.1 commands, JSON answers
  with hex numbers. Refusals are HTTP 200 with ``{"Error": {"Text": ...}}``.
- ``eagle100-local`` and ``eagle200-local`` devices each listen on an address of their own (one port per device
  on the loopback host), as a gateway on a LAN does, and take HTTP Basic (Cloud ID : Install Code). A request
  without credentials gets 401 with a Basic challenge (so ``curl --anyauth`` works).
  - Eagle-100: REST API 1.1 commands, JSON answers when ``<Format>JSON</Format>`` is asked, hex numbers and every
    field ``eagle100`` converts (Multiplier, Divisor, DigitsRight, DigitsLeft, SuppressLeadingZero, TimeStamp).
    Wrong credentials and refused commands are HTTP 200 with ``<Error><Text>...</Text></Error>``.
  - Eagle-200: ``device_list``, ``device_details`` and ``device_query`` (by HardwareAddress; named variables or
    ``<All>Y</All>``), XML answers with decimal values, Content-Type text/html as in the manual's example. Wrong
    credentials are HTTP 401 (what ``aioeagle`` reads as BadAuth); refused commands HTTP 200 with ``<Error>``.
- A command a protocol does not have (``get_device_data`` on the REST API, say) is refused with an error body
  ("Unknown command"); a command it has but the simulator does not serve is refused as not supported.

Each device has deterministic credentials and a behaviour: ``ok``, ``auth`` (refuses every credential), ``hang``
(answers long after any client timeout), ``error`` (HTTP 503) or ``slow`` (answers late but within a timeout).
``fail_rate`` spreads the failing behaviours over the fleet. Control routes (``/sim/...``, main address only) let
tests and operators list fixtures and change behaviours live. See ``services/poller/devices/`` for the sources
each protocol follows.
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import socket
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn

from services.poller.devices import PROTOCOLS
from services.poller.devices.transport import POST_MANAGER

MODES = ("ok", "auth", "hang", "error", "slow")
FAILING_MODES = ("auth", "hang", "error", "slow")
_EAGLE_EPOCH_UNIX = 946684800
_NAME = re.compile(rb"<Name>\s*([A-Za-z_]+)\s*</Name>", re.IGNORECASE)
_FORMAT_JSON = re.compile(rb"<Format>\s*JSON\s*</Format>", re.IGNORECASE)
_HARDWARE = re.compile(rb"<HardwareAddress>\s*([^<\s]+)\s*</HardwareAddress>", re.IGNORECASE)
_VARIABLE = re.compile(rb"<Variable>\s*<Name>\s*([^<\s]+)\s*</Name>", re.IGNORECASE)
_ALL = re.compile(rb"<All>\s*Y\s*</All>", re.IGNORECASE)
_MODE_PATH = re.compile(r"^/sim/devices/([A-Za-z0-9_-]+)/mode$")

# The REST API 1.1 command list (EAGLE REST API Manual v1.1) and the Eagle-200 local API's (Local API Manual v1.0).
REST_COMMANDS = frozenset(
    {
        "get_network_info",
        "get_network_status",
        "get_instantaneous_demand",
        "get_price",
        "get_message",
        "confirm_message",
        "get_current_summation",
        "get_history_data",
        "get_schedule",
        "set_schedule",
        "reboot",
        "get_demand_peaks",
        "list_network",
    }
)
EAGLE200_COMMANDS = frozenset(
    {"device_list", "device_details", "device_query", "device_control", "device_add", "wifi_status"}
)
JSON_TYPE = b"application/json"
XML_TYPE = b"text/html"  # what the Eagle-200 manual's example answer carries


def parse_latency(text: str) -> tuple[float, float]:
    """Parse "20-80ms", "50ms" or "0.02-0.08" (seconds) into (low, high) seconds."""
    value = text.strip().lower()
    scale = 0.001 if value.endswith("ms") else 1.0
    value = value.removesuffix("ms").removesuffix("s")
    low, _, high = value.partition("-")
    return float(low) * scale, float(high or low) * scale


def device_credentials(cloud_id: str) -> tuple[str, str]:
    """Return the (user, password) a simulated device accepts; on the LAN the password is the install code."""
    return f"eagle-{cloud_id}@example.com", f"install-{zlib.crc32(cloud_id.encode()):08x}"


def _xml_error(text: str) -> bytes:
    return f"<Error>\n<Text>{text}</Text>\n</Error>\n".encode()


def _json_error(text: str) -> bytes:
    return orjson.dumps({"Error": {"Text": text}})


@dataclass
class SimulatedDevice:
    """One simulated Eagle."""

    cloud_id: str
    user: str
    password: str
    mode: str = "ok"
    base_watts: int = 500
    protocol: str = "cloud"
    host: str | None = None  # "address:port" of a local device once its socket is bound

    @property
    def meter_address(self) -> str:
        """Return the HardwareAddress of the device's electric meter."""
        return f"0x000781{zlib.crc32(self.cloud_id.encode()):010x}"[:18]

    @property
    def mac(self) -> str:
        """Return the Eagle's own MAC (DeviceMacId)."""
        return f"0xd8d5b900{zlib.crc32(self.cloud_id.encode()):08x}"

    def demand_watts(self, now: float) -> int:
        """Return the demand the meter shows at ``now``."""
        return self.base_watts + int(now) % 250

    def delivered_wh(self, now: float) -> int:
        """Return the energy delivered so far at ``now``, in Wh."""
        return self.base_watts * 10_000 + int(now / 6)


@dataclass
class SimulatedFleet:
    """Thousands of Eagles answering on one ASGI app; the last ids are local devices when asked."""

    count: int
    latency: tuple[float, float] = (0.02, 0.08)
    fail_rate: float = 0.0
    seed: int = 0
    hang_s: float = 30.0
    slow: tuple[float, float] = (1.0, 2.5)
    id_width: int = 6
    record_times: bool = False
    eagle100_local: int = 0
    eagle200_local: int = 0
    local_port_base: int = 0  # 0: each local device gets a free port from the system
    devices: dict[str, SimulatedDevice] = field(init=False)
    requests: Counter[str] = field(init=False, default_factory=Counter)
    times: dict[str, list[float]] = field(init=False, default_factory=dict)
    by_port: dict[int, SimulatedDevice] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.eagle100_local + self.eagle200_local > self.count:
            raise ValueError("more local devices than devices")
        rng = random.Random(self.seed)
        first_local = self.count - self.eagle100_local - self.eagle200_local
        self.devices = {}
        for number in range(self.count):
            cloud_id = f"{number:0{self.id_width}d}"
            user, password = device_credentials(cloud_id)
            mode = rng.choice(FAILING_MODES) if rng.random() < self.fail_rate else "ok"
            protocol = "cloud"
            if number >= first_local:
                protocol = "eagle100-local" if number < first_local + self.eagle100_local else "eagle200-local"
            device = SimulatedDevice(cloud_id, user, password, mode, 200 + rng.randrange(3000), protocol)
            self.devices[cloud_id] = device

    @property
    def local_devices(self) -> list[SimulatedDevice]:
        """Return the devices that listen on an address of their own."""
        return [d for d in self.devices.values() if d.protocol != "cloud"]

    def bind_sockets(self, host: str, port: int) -> list[socket.socket]:
        """Bind the main address and one address per local device; return the sockets (uvicorn listens on them)."""
        sockets = [_bind(host, port)]
        for offset, device in enumerate(self.local_devices):
            sock = _bind(host, self.local_port_base + offset if self.local_port_base else 0)
            bound = sock.getsockname()[1]
            device.host = f"{host}:{bound}"
            self.by_port[bound] = device
            sockets.append(sock)
        return sockets

    def set_mode(self, cloud_id: str, mode: str) -> None:
        """Change one device's behaviour."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.devices[cloud_id].mode = mode

    def fixtures(self) -> list[dict[str, Any]]:
        """Return registration records (JSON-lines friendly) for every device."""
        records = []
        for d in self.devices.values():
            record = {"cloud_id": d.cloud_id, "owner_email": d.user, "eagle_password": d.password, "mode": d.mode}
            if d.protocol != "cloud":
                record |= {"protocol": d.protocol, "host": d.host}
            records.append(record)
        return records

    # -- answers --------------------------------------------------------------------------------------------
    def answer(self, device: SimulatedDevice, command: str) -> dict[str, Any] | None:
        """Return the REST API 1.1 JSON answer of ``command`` for ``device`` now (None: not simulated)."""
        now = time.time()
        stamp = f"0x{int(now) - _EAGLE_EPOCH_UNIX:08x}"
        meter = f"0x{device.meter_address[2:].rjust(16, '0')}"
        scale = {"Multiplier": "0x00000001", "Divisor": "0x000003e8", "DigitsRight": "0x03", "DigitsLeft": "0x0f"}
        if command == "get_instantaneous_demand":
            demand = {
                "DeviceMacId": device.mac,
                "MeterMacId": meter,
                "TimeStamp": stamp,
                "Demand": f"0x{device.demand_watts(now):06x}",
                **scale,
                "SuppressLeadingZero": "Y",
            }
            return {"InstantaneousDemand": demand}
        if command == "get_current_summation":
            summation = {
                "DeviceMacId": device.mac,
                "MeterMacId": meter,
                "TimeStamp": stamp,
                "SummationDelivered": f"0x{device.delivered_wh(now):012x}",
                "SummationReceived": "0x000000000000",
                **scale,
                "SuppressLeadingZero": "Y",
            }
            return {"CurrentSummation": summation}
        if command == "get_network_info":
            info = {
                "DeviceMacId": device.mac,
                "CoordMacId": meter,
                "Status": "Connected",
                "Description": "Successfully Joined",
                "LinkStrength": "0x64",
                "ModelId": "Z109-EAGLE",
            }
            return {"NetworkInfo": info}
        if command == "get_network_status":
            return {"NetworkStatus": {"DeviceMacId": device.mac, "Status": "Connected", "LinkStrength": "0x64"}}
        return None

    def eagle200_answer(self, device: SimulatedDevice, command: str, body: bytes) -> bytes:
        """Return the Eagle-200 local API's XML answer of ``command``."""
        now = time.time()
        if command == "device_list":
            return f"<DeviceList>\n{self._device_block(device, now, 'Device')}</DeviceList>\n".encode()
        if command not in ("device_query", "device_details"):
            return _xml_error("Unknown command" if command not in EAGLE200_COMMANDS else "Command not supported")
        asked = _HARDWARE.search(body)
        if asked is None or asked.group(1).decode().lower() != device.meter_address.lower():
            return _xml_error("Device not found")
        variables = self._variables(device, now)
        if command == "device_details":
            names = "".join(f"<Variable>{name}</Variable>\n" for name in variables)
            return (
                f"<Device>\n{self._device_block(device, now, 'DeviceDetails')}<Components>\n<Component>\n"
                f"<Name>Main</Name>\n<Variables>\n{names}</Variables>\n</Component>\n</Components>\n</Device>\n"
            ).encode()
        wanted = [n.decode() for n in _VARIABLE.findall(body)] if not _ALL.search(body) else list(variables)
        rows = "".join(
            f"<Variable>\n<Name>{name}</Name>\n<Value>{variables[name][0]}</Value>\n<Units>{variables[name][1]}"
            f"</Units>\n<Description>{variables[name][2]}</Description>\n</Variable>\n"
            for name in wanted
            if name in variables
        )
        return (
            f"<Device>\n{self._device_block(device, now, 'DeviceDetails')}<Components>\n<Component>\n"
            f"<HardwareId></HardwareId>\n<FixedId>0</FixedId>\n<Name>Main</Name>\n<Variables>\n{rows}</Variables>\n"
            "</Component>\n</Components>\n</Device>\n"
        ).encode()

    def _device_block(self, device: SimulatedDevice, now: float, tag: str) -> str:
        return (
            f"<{tag}>\n<HardwareAddress>{device.meter_address}</HardwareAddress>\n<Manufacturer>Generic</Manufacturer>\n"
            "<ModelId>electric_meter</ModelId>\n<Protocol>Zigbee</Protocol>\n"
            f"<LastContact>0x{int(now):08x}</LastContact>\n<ConnectionStatus>Connected</ConnectionStatus>\n"
            f"<NetworkAddress>0x0000</NetworkAddress>\n<Name>Power Meter</Name>\n</{tag}>\n"
        )

    def _variables(self, device: SimulatedDevice, now: float) -> dict[str, tuple[str, str, str]]:
        return {
            "zigbee:InstantaneousDemand": (f"{device.demand_watts(now) / 1000:.6f}", "kW", "Instantaneous Demand"),
            "zigbee:Multiplier": ("1", "", "Multiplier applied to demand and summation values"),
            "zigbee:Divisor": ("1000", "", "Divisor applied to demand and summation values"),
            "zigbee:CurrentSummationDelivered": (
                f"{device.delivered_wh(now) / 1000:.6f}",
                "kWh",
                "Summation Delivered to Home",
            ),
            "zigbee:CurrentSummationReceived": ("0.000000", "kWh", "Summation Received from Home"),
        }

    # -- HTTP -----------------------------------------------------------------------------------------------
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
        server = scope.get("server") or ("", 0)
        local = self.by_port.get(server[1])
        extra: list[tuple[bytes, bytes]] = []
        content_type = JSON_TYPE
        if path == POST_MANAGER and method == "POST":
            if local is not None:
                status, content_type, payload, extra = await self._local(local, dict(scope["headers"]), body)
            else:
                status, payload = await self._cloud(dict(scope["headers"]), body)
        elif local is not None:
            status, content_type, payload = 404, XML_TYPE, b"Not Found"
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
        headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _count(self, cloud_id: str, command: str) -> None:
        """Count a request; with ``record_times`` note when the device was asked for its demand."""
        self.requests[cloud_id] += 1
        if self.record_times and command in ("get_instantaneous_demand", "device_query"):
            self.times.setdefault(cloud_id, []).append(time.monotonic())

    async def _behave(self, device: SimulatedDevice) -> tuple[int, bytes] | None:
        """Wait the device's latency and apply its failing behaviour; return a failure answer, or None."""
        await asyncio.sleep(random.uniform(*self.latency))
        if device.mode == "hang":
            await asyncio.sleep(self.hang_s)
            return 504, b"Gateway Timeout"
        if device.mode == "error":
            return 503, b"Service Unavailable"
        if device.mode == "slow":
            await asyncio.sleep(random.uniform(*self.slow))
        return None

    async def _cloud(self, headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
        cloud_id = headers.get(b"cloud-id", b"").decode()
        device = self.devices.get(cloud_id)
        command = _command(body)
        self._count(cloud_id, command)
        if (
            device is None
            or device.protocol != "cloud"
            or device.mode == "auth"
            or headers.get(b"user", b"").decode() != device.user
            or headers.get(b"password", b"").decode() != device.password
        ):
            return 200, _json_error("Authentication failed: unknown Cloud-ID, User or Password")
        failure = await self._behave(device)
        if failure is not None:
            return failure
        answer = self.answer(device, command)
        if answer is None:
            return 200, _json_error("Unknown command" if command not in REST_COMMANDS else "Command not supported")
        return 200, orjson.dumps(answer)

    async def _local(
        self, device: SimulatedDevice, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        command = _command(body)
        self._count(device.cloud_id, command)
        given = _basic_credentials(headers.get(b"authorization", b""))
        if given is None:
            challenge = [(b"www-authenticate", b'Basic realm="EAGLE"')]
            return 401, XML_TYPE, b"Unauthorized", challenge
        if device.mode == "auth" or given != (device.cloud_id, device.password):
            if device.protocol == "eagle200-local":
                return 401, XML_TYPE, b"Unauthorized", [(b"www-authenticate", b'Basic realm="EAGLE"')]
            return 200, XML_TYPE, _xml_error("Authentication failed: wrong Cloud ID or Install Code"), []
        failure = await self._behave(device)
        if failure is not None:
            return failure[0], XML_TYPE, failure[1], []
        if device.protocol == "eagle200-local":
            return 200, XML_TYPE, self.eagle200_answer(device, command, body), []
        answer = self.answer(device, command)
        if answer is None:
            refusal = "Unknown command" if command not in REST_COMMANDS else "Command not supported"
            return 200, XML_TYPE, _xml_error(refusal), []
        if not _FORMAT_JSON.search(body):
            return 200, XML_TYPE, _xml_error("Only <Format>JSON</Format> answers are simulated"), []
        return 200, JSON_TYPE, orjson.dumps(answer), []


def _command(body: bytes) -> str:
    match = _NAME.search(body)
    return match.group(1).decode().lower() if match else ""


def _basic_credentials(header: bytes) -> tuple[str, str] | None:
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class FleetServer(uvicorn.Server):
    """A uvicorn server that also listens on every local device's own address of a fleet it serves."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve; bind the fleet's addresses first when the app is a fleet with local devices."""
        app = self.config.app
        if sockets is None and isinstance(app, SimulatedFleet) and app.local_devices:
            sockets = app.bind_sockets(self.config.host, self.config.port)
        await super().serve(sockets=sockets)


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
    return FleetServer(config)


__all__ = ["PROTOCOLS", "SimulatedDevice", "SimulatedFleet", "device_credentials", "simulator_server"]
