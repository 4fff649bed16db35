"""The Eagle clients: hex and decimal conversions, documented answer shapes, error bodies, the cloud simulator."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from services.poller.devices import DeviceAuthError, DeviceError, DeviceUnreachableError
from services.poller.devices.eagle import demand_kw, summation_kwh
from services.poller.devices.eagle200 import meter_address, sample_of
from services.poller.devices.reader import DeviceReader
from services.poller.devices.transport import raise_for_error_body
from services.poller.simulator import SimulatedFleet, parse_latency

FIXTURES = Path(__file__).parent / "fixtures"


def test_demand_hex_is_scaled_by_multiplier_and_divisor_and_signed() -> None:
    answer = {"InstantaneousDemand": {"Demand": "0x0004d2", "Multiplier": "0x00000001", "Divisor": "0x000003e8"}}
    assert demand_kw(answer) == pytest.approx(1.234)
    exporting = {"InstantaneousDemand": {"Demand": "0xfffc18", "Multiplier": "0x1", "Divisor": "0x3e8"}}
    assert demand_kw(exporting) == pytest.approx(-1.0)
    zero_divisor = {"InstantaneousDemand": {"Demand": "0x000010", "Multiplier": "0x2", "Divisor": "0x0"}}
    assert demand_kw(zero_divisor) == 32
    summation = {
        "CurrentSummation": {
            "SummationDelivered": "0x0000000f4240",
            "SummationReceived": "0x0",
            "Multiplier": "0x1",
            "Divisor": "0x3e8",
        }
    }
    assert summation_kwh(summation) == (1000.0, 0.0)


def test_rest_api_answers_in_the_documented_shape_are_parsed() -> None:
    demand = orjson.loads((FIXTURES / "eagle_rest_instantaneous_demand.json").read_bytes())
    totals = orjson.loads((FIXTURES / "eagle_rest_current_summation.json").read_bytes())
    assert demand_kw(demand) == pytest.approx(-0.5)  # 24-bit two's complement: exporting to the grid
    assert summation_kwh(totals) == pytest.approx((45138.389, 12.5))


def test_eagle200_answers_in_the_documented_shape_are_parsed() -> None:
    assert meter_address((FIXTURES / "eagle200_device_list.xml").read_bytes()) == "0x00078100005e0f1a"
    sample = sample_of((FIXTURES / "eagle200_device_query.xml").read_bytes(), "0x00078100005e0f1a")
    assert sample.demand_kw == pytest.approx(1.418)
    assert sample.summation_delivered_kwh == pytest.approx(45120.333)
    assert sample.summation_received_kwh == pytest.approx(12.5)
    assert sample.raw["zigbee:InstantaneousDemand"] == {"Value": "1.418000", "Units": "kW"}
    # The manual's own example writes the unit into the value; watts are converted.
    one = b"<Device><Components><Component><Variables><Variable><Name>zigbee:InstantaneousDemand</Name>"
    assert sample_of(one + b"<Value>21.499 kW</Value></Variable></Variables></Component></Components></Device>", "x")
    watts = sample_of(
        one + b"<Value>850</Value><Units>W</Units></Variable></Variables></Component></Components></Device>", "x"
    )
    assert watts.demand_kw == pytest.approx(0.85) and watts.summation_delivered_kwh is None
    with pytest.raises(DeviceError, match="no electric meter"):
        meter_address(b"<DeviceList></DeviceList>")


def test_error_bodies_with_http_200_are_classified() -> None:
    with pytest.raises(DeviceAuthError):
        raise_for_error_body(b"<Error>\n<Text>Authentication failed: wrong Cloud ID or Install Code</Text>\n</Error>")
    with pytest.raises(DeviceAuthError):
        raise_for_error_body(b'{"Error": {"Text": "Invalid User or Password"}}')
    with pytest.raises(DeviceError) as refused:
        raise_for_error_body(b"<Error><Text>Unknown command</Text></Error>")
    assert not isinstance(refused.value, DeviceAuthError)
    raise_for_error_body(b'{"InstantaneousDemand": {}}')  # an answer is no error
    raise_for_error_body(b"<DeviceList></DeviceList>")


def test_latency_option_parses_milliseconds() -> None:
    assert parse_latency("20-80ms") == pytest.approx((0.02, 0.08))
    assert parse_latency("0.5") == (0.5, 0.5)


async def test_client_reads_simulated_cloud_eagle(fleet: SimulatedFleet, eagle_url: str) -> None:
    device = fleet.devices["000004"]
    async with httpx.AsyncClient(timeout=2) as http:
        reader = DeviceReader(http, cloud_base_url=eagle_url)
        sample = await reader.read(protocol="cloud", cloud_id="000004", user=device.user, password=device.password)
        demand_only = await reader.read(
            protocol="cloud", cloud_id="000004", user=device.user, password=device.password, with_summation=False
        )
        with pytest.raises(DeviceAuthError):
            await reader.read(protocol="cloud", cloud_id="000004", user=device.user, password="wrong")
        fleet.set_mode("000005", "error")
        other = fleet.devices["000005"]
        with pytest.raises(DeviceUnreachableError):
            await reader.read(protocol="cloud", cloud_id="000005", user=other.user, password=other.password)
        # The command the poller used to send is not in the REST API 1.1: the simulated cloud refuses it.
        headers = {"Cloud-ID": "000004", "User": device.user, "Password": device.password}
        body = b"<Command><Name>get_device_data</Name><Format>JSON</Format></Command>"
        refused = await http.post(f"{eagle_url}/cgi-bin/post_manager", headers=headers, content=body)
    assert 0.2 <= sample.demand_kw <= 3.5
    assert sample.summation_delivered_kwh and sample.summation_delivered_kwh > 0
    assert sample.raw["InstantaneousDemand"]["Divisor"] == "0x000003e8"
    assert demand_only.summation_delivered_kwh is None and "CurrentSummation" not in demand_only.raw
    assert refused.status_code == 200 and refused.json() == {"Error": {"Text": "Unknown command"}}
    assert fleet.requests["000004"] == 5  # demand + summation, demand, refused, get_device_data
