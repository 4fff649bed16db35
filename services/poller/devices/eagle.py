"""Rainforest Eagle client speaking the cloud API.

Requests are ``POST <base>/cgi-bin/post_manager`` with the headers ``Cloud-ID``, ``User`` and
``Password`` and an XML command body such as
``<Command><Name>get_device_data</Name><Format>JSON</Format></Command>``. Answers are JSON
whose numbers are hex strings: a value with a ``Multiplier`` and ``Divisor``; demand is signed.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.poller.devices import DeviceAuthError, DeviceError, DeviceUnreachableError, Sample

POST_MANAGER = "/cgi-bin/post_manager"


def command_body(name: str) -> bytes:
    """Return the XML body of an Eagle command asking for a JSON answer."""
    return f"<Command><Name>{name}</Name><Format>JSON</Format></Command>".encode()


def hex_int(value: str | None, *, signed_bits: int = 0) -> int:
    """Parse an Eagle hex field ("0x00047c"); with ``signed_bits`` read it as two's complement."""
    if not value:
        return 0
    number = int(value, 16)
    if signed_bits and number >= 1 << (signed_bits - 1):
        number -= 1 << signed_bits
    return number


def scaled(section: dict[str, Any], field: str, *, signed: bool = False) -> float:
    """Return ``field`` of a section times its Multiplier over its Divisor (0 means 1, as the Eagle does)."""
    raw = section.get(field)
    if raw is None:
        raise DeviceError(f"answer lacks {field}")
    digits = len(raw) - 2 if raw.lower().startswith("0x") else len(raw)
    bits = 32 if digits > 6 else 24
    value = hex_int(raw, signed_bits=bits if signed else 0)
    multiplier = hex_int(section.get("Multiplier")) or 1
    divisor = hex_int(section.get("Divisor")) or 1
    return value * multiplier / divisor


def demand_kw(answer: dict[str, Any]) -> float:
    """Return the instantaneous demand in kW from an answer holding ``InstantaneousDemand``."""
    section = answer.get("InstantaneousDemand")
    if not isinstance(section, dict):
        raise DeviceError("answer lacks InstantaneousDemand")
    return scaled(section, "Demand", signed=True)


def summation_kwh(answer: dict[str, Any]) -> tuple[float | None, float | None]:
    """Return (delivered, received) kWh from an answer holding ``CurrentSummation``, or Nones."""
    section = answer.get("CurrentSummation")
    if not isinstance(section, dict):
        return None, None
    return scaled(section, "SummationDelivered"), scaled(section, "SummationReceived")


class EagleClient:
    """Read Rainforest Eagles through the cloud API over the process's shared httpx client.

    With ``transport`` (the client's own connection pool) requests go straight to the pool: the
    client's cookie, redirect and auth layers do nothing for this API and cost about a third of the
    CPU of a request at thousands of requests per second.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.http = http
        self.transport = transport
        self.url = httpx.URL(base_url.rstrip("/") + POST_MANAGER)
        # httpx times each phase separately; splitting the budget keeps the whole request within timeout_s.
        t = timeout_s
        budget = httpx.Timeout(connect=0.4 * t, read=0.4 * t, write=0.1 * t, pool=0.1 * t)
        self.extensions = {"timeout": budget.as_dict()}
        self._bodies: dict[str, bytes] = {}

    async def _send(self, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            response = await self.http.post(self.url, content=body, headers=headers)
            return response.status_code, response.content
        request = httpx.Request("POST", self.url, headers=headers, content=body, extensions=self.extensions)
        response = await self.transport.handle_async_request(request)
        try:
            return response.status_code, await response.aread()
        finally:
            await response.aclose()

    async def command(self, *, cloud_id: str, user: str, password: str, name: str) -> dict[str, Any]:
        """Send one command and return the decoded JSON answer."""
        body = self._bodies.get(name) or self._bodies.setdefault(name, command_body(name))
        headers = [("Cloud-ID", cloud_id), ("User", user), ("Password", password), ("Content-Type", "text/xml")]
        try:
            status, content = await self._send(headers, body)
        except httpx.TimeoutException as exc:
            raise DeviceUnreachableError("timeout") from exc
        except httpx.TransportError as exc:
            raise DeviceUnreachableError(f"transport error: {type(exc).__name__}") from exc
        if status in (401, 403):
            raise DeviceAuthError(f"credentials refused (HTTP {status})")
        if status >= 500 or status == 429:
            raise DeviceUnreachableError(f"HTTP {status}")
        if status != 200:
            raise DeviceError(f"unexpected HTTP {status}")
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DeviceError("answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise DeviceError("answer is not a JSON object")
        return answer

    async def read(self, *, cloud_id: str, user: str, password: str) -> Sample:
        """Return demand and summations in one request (``get_device_data``)."""
        answer = await self.command(cloud_id=cloud_id, user=user, password=password, name="get_device_data")
        delivered, received = summation_kwh(answer)
        raw = {key: answer[key] for key in ("InstantaneousDemand", "CurrentSummation") if key in answer}
        return Sample(
            demand_kw=demand_kw(answer), summation_delivered_kwh=delivered, summation_received_kwh=received, raw=raw
        )
