"""The Eagle-200 local API (``eagle200-local``): XML commands and answers on the LAN, HTTP Basic.

What this follows (the "EAGLE-200 Local API Manual" v1.0, Sep 2017, and ``aioeagle`` on PyPI, the client Home
Assistant uses; read in .venv/lib/python3.11/site-packages/aioeagle/):

- Request: ``POST http://<address>/cgi-bin/post_manager``, ``Content-Type: text/xml``, ``Authorization: Basic``
  with the Cloud ID as user and the Install Code as password; the body an XML command fragment.
- ``<Command><Name>device_list</Name></Command>`` answers ``<DeviceList><Device>...</Device>...</DeviceList>``,
  each Device with HardwareAddress, Manufacturer, ModelId, Protocol, LastContact, ConnectionStatus,
  NetworkAddress. The meter is the device whose ModelId is ``electric_meter`` (``aioeagle`` skips the others).
- ``device_query`` names the meter by ``<DeviceDetails><HardwareAddress>`` and the variables by
  ``<Components><Component><Name>Main</Name><Variables><Variable><Name>zigbee:InstantaneousDemand</Name>...``
  (or ``<Components><All>Y</All></Components>`` for all). It answers ``<Device><DeviceDetails>...</DeviceDetails>
  <Components><Component><Name>Main</Name><Variables><Variable><Name/><Value/><Units/><Description/>...``; a
  Value is decimal text ("2.790000" with Units kW; the manual also shows "21.499 kW"), never hex.
- We ask for zigbee:InstantaneousDemand, zigbee:CurrentSummationDelivered and zigbee:CurrentSummationReceived in
  one query. ``aioeagle`` notes that firmware may leave CurrentSummationDelivered out of an answer, so a missing
  summation is None, not an error; a missing demand is an error.
- Wrong or missing credentials: HTTP 401 (``aioeagle`` raises ``BadAuth`` on exactly that). Other refusals: see
  :mod:`services.poller.devices.transport`.

The meter's hardware address is discovered once per gateway with ``device_list`` and kept in memory; any failed
query forgets it, so a replaced meter is found again on the next poll.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # the answers are small; expat >= 2.4 refuses entity-expansion bombs
from typing import Any

from services.poller.devices import DeviceError, Sample
from services.poller.devices.transport import PostSender, basic_authorization, local_url

DEMAND = "zigbee:InstantaneousDemand"
DELIVERED = "zigbee:CurrentSummationDelivered"
RECEIVED = "zigbee:CurrentSummationReceived"
VARIABLES = (DEMAND, DELIVERED, RECEIVED)
DEVICE_LIST = b"<Command><Name>device_list</Name></Command>"

_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$")
_TO_KILO = {"kw": 1.0, "w": 0.001, "kwh": 1.0, "wh": 0.001, "": 1.0}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name.lower():
            return (child.text or "").strip()
    return None


def _parse(content: bytes, root_name: str) -> ET.Element:
    try:
        root = ET.fromstring(content)
    except ET.ParseError as exc:
        raise DeviceError("answer is not XML") from exc
    if _local(root.tag) != root_name.lower():
        raise DeviceError(f"answer is <{root.tag}>, not <{root_name}>")
    return root


def query_body(hardware_address: str, variables: tuple[str, ...] = VARIABLES) -> bytes:
    """Return the ``device_query`` command asking the meter's Main component for ``variables``."""
    asked = "".join(f"<Variable><Name>{name}</Name></Variable>" for name in variables)
    return (
        "<Command><Name>device_query</Name>"
        f"<DeviceDetails><HardwareAddress>{hardware_address}</HardwareAddress></DeviceDetails>"
        f"<Components><Component><Name>Main</Name><Variables>{asked}</Variables></Component></Components>"
        "</Command>"
    ).encode()


def meter_address(content: bytes) -> str:
    """Return the HardwareAddress of the electric meter in a ``device_list`` answer (connected ones first)."""
    root = _parse(content, "DeviceList")
    meters = [d for d in root if _local(d.tag) == "device" and (_child_text(d, "ModelId") or "") == "electric_meter"]
    meters.sort(key=lambda d: (_child_text(d, "ConnectionStatus") or "") != "Connected")
    for meter in meters:
        address = _child_text(meter, "HardwareAddress")
        if address:
            return address
    raise DeviceError("the gateway lists no electric meter")


def variables_of(content: bytes) -> dict[str, dict[str, str]]:
    """Return {variable name: {"Value", "Units"}} of a ``device_query`` answer."""
    root = _parse(content, "Device")
    out: dict[str, dict[str, str]] = {}
    for variable in root.iter():
        if _local(variable.tag) != "variable":
            continue
        name = _child_text(variable, "Name")
        if name:
            out[name] = {"Value": _child_text(variable, "Value") or "", "Units": _child_text(variable, "Units") or ""}
    return out


def decimal_value(variable: dict[str, str] | None) -> float | None:
    """Return a variable's value in kW or kWh ("2.790000" kW, "21.499 kW", "850 W"), None when empty."""
    if variable is None or not variable.get("Value"):
        return None
    match = _NUMBER.match(variable["Value"])
    if match is None:
        raise DeviceError(f"value {variable['Value'][:40]!r} is not a decimal number")
    unit = (match.group(2) or variable.get("Units") or "").lower()
    if unit not in _TO_KILO:
        raise DeviceError(f"unexpected unit {unit!r}")
    return float(match.group(1)) * _TO_KILO[unit]


def sample_of(content: bytes, hardware_address: str) -> Sample:
    """Return the reading of a ``device_query`` answer."""
    variables = variables_of(content)
    demand = decimal_value(variables.get(DEMAND))
    if demand is None:
        raise DeviceError(f"answer lacks {DEMAND}")
    raw: dict[str, Any] = {"HardwareAddress": hardware_address}
    raw.update({name: variables[name] for name in VARIABLES if name in variables})
    return Sample(
        demand_kw=demand,
        summation_delivered_kwh=decimal_value(variables.get(DELIVERED)),
        summation_received_kwh=decimal_value(variables.get(RECEIVED)),
        raw=raw,
    )


class Eagle200Client:
    """Read Eagle-200 gateways on the LAN: find the meter once, then one ``device_query`` per reading."""

    def __init__(self, sender: PostSender) -> None:
        self.sender = sender
        self.meters: dict[tuple[str, str], str] = {}

    async def read(self, *, host: str, cloud_id: str, install_code: str) -> Sample:
        """Return demand and summations of the gateway's meter."""
        url = local_url(host)
        headers = [("Authorization", basic_authorization(cloud_id, install_code)), ("Content-Type", "text/xml")]
        key = (host, cloud_id)
        address = self.meters.get(key)
        try:
            if address is None:
                address = meter_address(await self.sender.post(url, headers, DEVICE_LIST))
                self.meters[key] = address
            return sample_of(await self.sender.post(url, headers, query_body(address)), address)
        except DeviceError:
            self.meters.pop(key, None)
            raise
