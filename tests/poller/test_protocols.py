"""The three Eagle protocols end to end: the real clients read the simulator, the poller reads every protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aioeagle
import aiohttp
import eagle100
import httpx
import orjson
import pytest
import requests

from services.poller.devices import DeviceAuthError
from services.poller.devices.reader import DeviceReader
from services.poller.models import DeviceCreate
from services.poller.registry import Registry
from services.poller.simulator import SimulatedFleet
from tests.helpers import wait_until
from tests.poller.conftest import device_record

CLOUD, EAGLE100, EAGLE200 = "000000", "000003", "000005"


@pytest.fixture
def fleet() -> SimulatedFleet:
    """Three cloud devices, then two Eagle-100s and two Eagle-200s, each local one on its own port."""
    return SimulatedFleet(count=7, latency=(0.002, 0.005), hang_s=5.0, eagle100_local=2, eagle200_local=2)


def _watts(fleet: SimulatedFleet, cloud_id: str) -> tuple[float, float]:
    """Return the demand range (kW) the device can show."""
    base = fleet.devices[cloud_id].base_watts
    return base / 1000, (base + 250) / 1000


async def test_aioeagle_reads_a_simulated_eagle200(fleet: SimulatedFleet, eagle_url: str) -> None:
    device = fleet.devices[EAGLE200]
    assert device.protocol == "eagle200-local" and device.host and device.host != eagle_url.removeprefix("http://")
    async with aiohttp.ClientSession() as session:
        hub = aioeagle.EagleHub(session, device.cloud_id, device.password, host=device.host)
        meters = await hub.get_device_list()
        assert [m.hardware_address for m in meters] == [device.meter_address]
        assert meters[0].is_connected and meters[0].model_id == "electric_meter"
        values = await meters[0].get_device_query()  # <All>Y</All>
        asked = await meters[0].get_device_query(["zigbee:InstantaneousDemand", "zigbee:CurrentSummationDelivered"])
        wrong = aioeagle.EagleHub(session, device.cloud_id, "0000000000000000", host=device.host)
        with pytest.raises(aioeagle.BadAuth):
            await wrong.get_device_list()
    low, high = _watts(fleet, EAGLE200)
    assert low <= float(values["zigbee:InstantaneousDemand"]["Value"]) <= high
    assert values["zigbee:InstantaneousDemand"]["Units"] == "kW"
    assert float(values["zigbee:CurrentSummationDelivered"]["Value"]) > 0
    assert set(asked) == {"zigbee:InstantaneousDemand", "zigbee:CurrentSummationDelivered"}


async def test_eagle100_client_reads_a_simulated_eagle100(fleet: SimulatedFleet, eagle_url: str) -> None:
    device = fleet.devices[EAGLE100]
    client = eagle100.Eagle(device.cloud_id, device.password, address=device.host)
    demand = await asyncio.to_thread(client.get_instantaneous_demand)
    totals = await asyncio.to_thread(client.get_current_summation)
    info = await asyncio.to_thread(client.get_network_info)
    low, high = _watts(fleet, EAGLE100)
    assert low <= demand["InstantaneousDemand"]["Demand"] <= high  # eagle100 applied Multiplier/Divisor itself
    assert totals["CurrentSummation"]["SummationDelivered"] > 0
    assert info["NetworkInfo"]["ModelId"] == "Z109-EAGLE"  # what Home Assistant checks to call it an Eagle-100
    # Wrong install code: HTTP 200 with an <Error> body, which eagle100 cannot read as JSON (Home Assistant's
    # config flow reports exactly that as invalid auth).
    wrong = eagle100.Eagle(device.cloud_id, "0000000000000000", address=device.host)
    with pytest.raises(ValueError):
        await asyncio.to_thread(wrong.get_instantaneous_demand)
    # A command of the Eagle-200 API, unknown to the Eagle-100, is refused with an error body.
    refused = await asyncio.to_thread(
        requests.post,
        f"http://{device.host}/cgi-bin/post_manager",
        data="<Command><Name>device_list</Name></Command>",
        auth=(device.cloud_id, device.password),
        timeout=5,
    )
    assert refused.status_code == 200 and "<Error>" in refused.text and "Unknown command" in refused.text
    unauthenticated = await asyncio.to_thread(
        requests.post, f"http://{device.host}/cgi-bin/post_manager", data="<Command/>", timeout=5
    )
    assert unauthenticated.status_code == 401 and unauthenticated.headers["WWW-Authenticate"].startswith("Basic")


async def test_reader_speaks_each_protocol_and_refusals_are_auth_errors(fleet: SimulatedFleet, eagle_url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        reader = DeviceReader(http, cloud_base_url=eagle_url)
        samples = {}
        for cloud_id in (CLOUD, EAGLE100, EAGLE200):
            device = fleet.devices[cloud_id]
            samples[cloud_id] = await reader.read(
                protocol=device.protocol,
                cloud_id=cloud_id,
                user=device.user,
                password=device.password,
                host=device.host,
            )
            with pytest.raises(DeviceAuthError):
                await reader.read(
                    protocol=device.protocol, cloud_id=cloud_id, user=device.user, password="wrong", host=device.host
                )
        # A local device is not on the (simulated) cloud, and a device's LAN address does not serve another.
        with pytest.raises(DeviceAuthError):
            device = fleet.devices[EAGLE100]
            await reader.read(protocol="cloud", cloud_id=EAGLE100, user=device.user, password=device.password)
    for cloud_id, sample in samples.items():
        low, high = _watts(fleet, cloud_id)
        assert low <= sample.demand_kw <= high, cloud_id
        assert sample.summation_delivered_kwh and sample.summation_delivered_kwh > 0
    assert samples[EAGLE200].raw["HardwareAddress"] == fleet.devices[EAGLE200].meter_address


async def test_poller_reads_every_protocol_and_marks_refusals_auth_failed(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any]
) -> None:
    good = ["000000", "000001", "000003", "000005"]
    for cloud_id in good:
        await registry.create(device_in=DeviceCreate.model_validate(record(fleet, cloud_id)))
    for cloud_id in ("000004", "000006"):  # one Eagle-100 and one Eagle-200 with a wrong install code
        wrong = record(fleet, cloud_id, eagle_password="ffffffffffffffff")
        await registry.create(device_in=DeviceCreate.model_validate(wrong))
    # A record written before protocols existed has no protocol field: it is a cloud device.
    await registry.redis.hdel(registry.keys.device("000001"), "protocol", "host")
    await start_poller()

    async def _all_read() -> bool:
        return all([(await registry.get(c)).total_events_logged >= 2 for c in good])

    await wait_until(_all_read, timeout=15, message="two readings of every protocol")

    async def _refused() -> bool:
        return {(await registry.get(c)).state for c in ("000004", "000006")} == {"auth_failed"}

    await wait_until(_refused, timeout=10, message="wrong install codes marked auth_failed")
    assert (await registry.get("000001")).protocol == "cloud"
    latest = {c: orjson.loads(await registry.latest(c) or b"{}") for c in good}
    for cloud_id in good:
        low, high = _watts(fleet, cloud_id)
        assert low <= latest[cloud_id]["demand_kw"] <= high, cloud_id
    assert "InstantaneousDemand" in latest["000003"]["raw"]
    assert latest["000005"]["raw"]["zigbee:InstantaneousDemand"]["Units"] == "kW"
    assert latest["000005"]["summation_delivered_kwh"] > 0
    assert "credentials refused" in ((await registry.get("000004")).last_error or "")
    assert "HTTP 401" in ((await registry.get("000006")).last_error or "")


def record(fleet: SimulatedFleet, cloud_id: str, **overrides: Any) -> dict[str, Any]:
    """Return the device's registration record, with its protocol and host."""
    device = fleet.devices[cloud_id]
    base = device_record(fleet, cloud_id)
    if device.protocol != "cloud":
        base |= {"protocol": device.protocol, "host": device.host}
    return base | overrides


def test_local_protocols_need_a_host_and_the_cloud_takes_none() -> None:
    base = {"cloud_id": "000009", "owner_email": "o@example.com", "eagle_password": "x"}
    assert DeviceCreate.model_validate(base).protocol == "cloud"
    with pytest.raises(ValueError, match="host is required"):
        DeviceCreate.model_validate(base | {"protocol": "eagle200-local"})
    with pytest.raises(ValueError, match="only for the local"):
        DeviceCreate.model_validate(base | {"host": "192.168.1.4"})
    with pytest.raises(ValueError):
        DeviceCreate.model_validate(base | {"protocol": "eagle100-local", "host": "http://evil/x"})
    assert (
        DeviceCreate.model_validate(base | {"protocol": "eagle100-local", "host": "10.0.0.7:80"}).host == "10.0.0.7:80"
    )


async def test_update_checks_protocol_and_host_together(registry: Registry, fleet: SimulatedFleet) -> None:
    from services.poller.models import DeviceUpdate
    from shared.errors import ConflictError

    await registry.create(device_in=DeviceCreate.model_validate(record(fleet, CLOUD)))
    with pytest.raises(ConflictError, match="host is required"):
        await registry.update(cloud_id=CLOUD, device_in=DeviceUpdate(protocol="eagle200-local"))
    moved = await registry.update(cloud_id=CLOUD, device_in=DeviceUpdate(protocol="eagle100-local", host="10.0.0.7"))
    assert (moved.protocol, moved.host) == ("eagle100-local", "10.0.0.7")
    back = await registry.update(cloud_id=CLOUD, device_in=DeviceUpdate(protocol="cloud"))
    assert (back.protocol, back.host) == ("cloud", None)


def test_cloud_tls_is_verified_unless_configured(make_settings: Callable[..., Any], tmp_path: Any) -> None:
    import ssl

    import certifi

    from services.poller.http_pool import tls_context
    from services.poller.settings import PollerSettings

    assert tls_context(make_settings(PollerSettings)) is None  # the default: verified against certifi's CAs
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(open(certifi.where(), "rb").read())
    own = tls_context(make_settings(PollerSettings, eagle_ca_file=bundle))
    assert own is not None and own.verify_mode == ssl.CERT_REQUIRED and own.check_hostname
    off = tls_context(make_settings(PollerSettings, eagle_verify_tls=False))
    assert off is not None and off.verify_mode == ssl.CERT_NONE
