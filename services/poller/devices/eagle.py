"""Rainforest Eagle REST API 1.1: the Rainforest cloud (``cloud``) and the Eagle-100 on the LAN (``eagle100-local``).

What this follows (the "EAGLE REST API Manual" v1.1, July 2015, and the ``eagle100`` client on PyPI, which Home
Assistant used for the Eagle-100; read in .venv/lib/python3.11/site-packages/eagle100/eagle100.py):

- Request: ``POST <base>/cgi-bin/post_manager`` with an XML command fragment as the body, e.g.
  ``<Command><Name>get_instantaneous_demand</Name><Format>JSON</Format></Command>``; element names are
  case-insensitive. ``eagle100`` sends ``Content-Type: application/xml``; we send ``text/xml``.
- Commands of 1.1: get_network_info, get_network_status, get_instantaneous_demand, get_price, get_message,
  confirm_message, get_current_summation, get_history_data, get_schedule, set_schedule, reboot,
  get_demand_peaks (and list_network, which has no JSON form). There is no ``get_device_data``: demand is read
  with ``get_instantaneous_demand``, the meter's totals with ``get_current_summation``.
- Authentication: the cloud (``https://rainforestcloud.com:9445``) takes the headers ``Cloud-ID``, ``User`` (the
  owner's e-mail) and ``Password``; an Eagle-100 on the LAN takes HTTP Basic with the Cloud ID as user and the
  Install Code as password (``eagle100`` puts them in the URL: ``http://{cloud_id}:{install_code}@{address}``).
- Answers with ``<Format>JSON</Format>``: ``{"InstantaneousDemand": {"DeviceMacId", "MeterMacId", "TimeStamp",
  "Demand", "Multiplier", "Divisor", "DigitsRight", "DigitsLeft", "SuppressLeadingZero"}}`` and
  ``{"CurrentSummation": {..., "SummationDelivered", "SummationReceived", "Multiplier", "Divisor", ...}}``. Every
  number is a hex string; a value is raw x Multiplier / Divisor, a zero Multiplier or Divisor counting as 1.
  Demand is a signed 24-bit integer (8 digits: 32-bit, as ``eagle100`` reads it), summations are unsigned;
  TimeStamp counts seconds since 2000-01-01 UTC.
- Refusals: see :mod:`services.poller.devices.transport` (HTTP 401/403, or HTTP 200 with an error body).
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.poller.devices import DeviceError, Sample
from services.poller.devices.transport import POST_MANAGER, PostSender, basic_authorization, local_url

__all__ = ["POST_MANAGER", "EagleRestClient", "cloud_headers", "command_body", "demand_kw", "summation_kwh"]

DEMAND = "get_instantaneous_demand"
SUMMATION = "get_current_summation"


def command_body(name: str) -> bytes:
    """Return the XML body of a REST API 1.1 command asking for a JSON answer."""
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
    if not isinstance(raw, str):
        raise DeviceError(f"answer lacks {field}")
    digits = len(raw) - 2 if raw.lower().startswith("0x") else len(raw)
    bits = 32 if digits > 6 else 24
    try:
        value = hex_int(raw, signed_bits=bits if signed else 0)
        multiplier = hex_int(section.get("Multiplier")) or 1
        divisor = hex_int(section.get("Divisor")) or 1
    except ValueError as exc:
        raise DeviceError(f"{field} is not hex") from exc
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
    received = scaled(section, "SummationReceived") if "SummationReceived" in section else None
    return scaled(section, "SummationDelivered"), received


def cloud_headers(cloud_id: str, user: str, password: str) -> list[tuple[str, str]]:
    """Return the headers of a cloud request."""
    return [("Cloud-ID", cloud_id), ("User", user), ("Password", password), ("Content-Type", "text/xml")]


def local_headers(cloud_id: str, install_code: str) -> list[tuple[str, str]]:
    """Return the headers of a request to an Eagle-100 on the LAN (HTTP Basic)."""
    return [("Authorization", basic_authorization(cloud_id, install_code)), ("Content-Type", "text/xml")]


class EagleRestClient:
    """Read Eagles that speak the REST API 1.1, through the cloud or on the LAN."""

    def __init__(self, sender: PostSender, *, cloud_base_url: str) -> None:
        self.sender = sender
        self.cloud_url = httpx.URL(cloud_base_url.rstrip("/") + POST_MANAGER)
        self._bodies = {name: command_body(name) for name in (DEMAND, SUMMATION)}

    async def command(self, url: httpx.URL, headers: list[tuple[str, str]], name: str) -> dict[str, Any]:
        """Send one command and return the decoded JSON answer."""
        body = self._bodies.get(name) or command_body(name)
        content = await self.sender.post(url, headers, body)
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise DeviceError("answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise DeviceError("answer is not a JSON object")
        return answer

    async def read_at(self, url: httpx.URL, headers: list[tuple[str, str]], *, with_summation: bool) -> Sample:
        """Read demand (``get_instantaneous_demand``) and, if asked, the totals (``get_current_summation``)."""
        answer = await self.command(url, headers, DEMAND)
        raw: dict[str, Any] = {"InstantaneousDemand": answer.get("InstantaneousDemand")}
        sample = Sample(demand_kw=demand_kw(answer), raw=raw)
        if with_summation:
            totals = await self.command(url, headers, SUMMATION)
            sample.summation_delivered_kwh, sample.summation_received_kwh = summation_kwh(totals)
            raw["CurrentSummation"] = totals.get("CurrentSummation")
        return sample

    async def read_cloud(self, *, cloud_id: str, user: str, password: str, with_summation: bool = True) -> Sample:
        """Read one Eagle through the Rainforest cloud."""
        return await self.read_at(
            self.cloud_url, cloud_headers(cloud_id, user, password), with_summation=with_summation
        )

    async def read_local(self, *, host: str, cloud_id: str, install_code: str, with_summation: bool = True) -> Sample:
        """Read one Eagle-100 on the LAN at ``host`` ("address[:port]")."""
        headers = local_headers(cloud_id, install_code)
        return await self.read_at(local_url(host), headers, with_summation=with_summation)
