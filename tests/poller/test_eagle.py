"""The Eagle client against the simulator, and the hex conversions."""

from __future__ import annotations

import httpx
import pytest

from services.poller.devices import DeviceAuthError, DeviceUnreachableError
from services.poller.devices.eagle import EagleClient, demand_kw, summation_kwh
from services.poller.simulator import SimulatedFleet, parse_latency


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


def test_latency_option_parses_milliseconds() -> None:
    assert parse_latency("20-80ms") == pytest.approx((0.02, 0.08))
    assert parse_latency("0.5") == (0.5, 0.5)


async def test_client_reads_simulated_eagle(fleet: SimulatedFleet, eagle_url: str) -> None:
    device = fleet.devices["000004"]
    async with httpx.AsyncClient(timeout=2) as http:
        client = EagleClient(http, eagle_url)
        sample = await client.read(cloud_id="000004", user=device.user, password=device.password)
        with pytest.raises(DeviceAuthError):
            await client.read(cloud_id="000004", user=device.user, password="wrong")
        fleet.set_mode("000005", "error")
        other = fleet.devices["000005"]
        with pytest.raises(DeviceUnreachableError):
            await client.read(cloud_id="000005", user=other.user, password=other.password)
    assert 0.2 <= sample.demand_kw <= 3.5
    assert sample.summation_delivered_kwh and sample.summation_delivered_kwh > 0
    assert sample.raw["InstantaneousDemand"]["Divisor"] == "0x000003e8"
