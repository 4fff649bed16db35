"""Issue #17 scenario 2: the device registry survives Redis losing its data (it is rebuilt from the database).

Real Redis (flushed with FLUSHALL), the real SQLite metadata database, the in-process simulated Eagle fleet.
"""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy import text

from services.poller.models import DeviceCreate
from services.poller.registry import Registry
from services.poller.settings import PollerSettings
from services.poller.simulator import SimulatedFleet
from services.poller.wiring import open_poller
from shared.db import create_tables
from tests.helpers import wait_until
from tests.poller.conftest import Api, device_record


async def _status(api: Api, cloud_id: str) -> int:
    return (await api.client.get(f"/v1/devices/{cloud_id}", headers=api.reader)).status_code


async def test_registered_devices_survive_a_redis_flush_and_are_polled_again(
    api: Api, redis: Redis, fleet: SimulatedFleet, poller_settings: Callable[..., PollerSettings]
) -> None:
    for cloud_id in ("000001", "000002"):
        response = await api.client.post("/v1/devices", json=device_record(fleet, cloud_id), headers=api.admin)
        assert response.status_code == 201, response.text
    paused = device_record(fleet, "000003", state="paused")
    assert (await api.client.post("/v1/devices", json=paused, headers=api.admin)).status_code == 201
    assert (await api.client.delete("/v1/devices/000002", headers=api.admin)).status_code == 204
    wiring = await open_poller(poller_settings(replica_id="replica-durable"))
    try:
        await wiring.start_polling()
        await wait_until(lambda: _asked(fleet, "000001", 1), message="device polled before the flush")

        await redis.flushall()
        await wait_until(lambda: _is(api, "000001", 200), message="device back after the flush")
        device = (await api.client.get("/v1/devices/000001", headers=api.reader)).json()
        assert device["state"] == "active" and device["owner_email"] == fleet.devices["000001"].user
        assert (await api.client.get("/v1/devices/000003", headers=api.reader)).json()["state"] == "paused"
        assert await _status(api, "000002") == 404  # deleted before the flush: never comes back
        assert await wiring.registry.credentials("000001") == (
            fleet.devices["000001"].user,
            fleet.devices["000001"].password,
        )
        asked = len(fleet.times.get("000001", []))
        await wait_until(lambda: _asked(fleet, "000001", asked + 2), message="device polled again after the rebuild")
        assert "000002" not in wiring.poller.entries and "000001" in wiring.poller.entries
        # The durable copy holds the credentials only as a Fernet token.
        async with wiring.db_engine.connect() as conn:
            rows = (await conn.execute(text("SELECT cloud_id, secret, deleted FROM poller_device"))).all()
        assert {row[0]: bool(row[2]) for row in rows} == {"000001": False, "000002": True, "000003": False}
        assert all(fleet.devices[row[0]].password not in row[1] for row in rows)
    finally:
        await wiring.close()


async def test_an_update_made_before_the_flush_is_what_comes_back(
    api: Api, redis: Redis, fleet: SimulatedFleet, poller_settings: Callable[..., PollerSettings]
) -> None:
    assert (await api.client.post("/v1/devices", json=device_record(fleet, "000004"), headers=api.admin)).is_success
    update = {"eagle_password": "rotated-code", "owner_email": "new@example.com", "state": "paused"}
    assert (await api.client.put("/v1/devices/000004", json=update, headers=api.admin)).status_code == 200
    batch = {"devices": [device_record(fleet, "000006"), device_record(fleet, "000006")]}  # one line twice
    batched = await api.client.post("/v1/devices", json=batch, headers=api.admin)
    assert [item["status"] for item in batched.json()["results"]] == ["created", "exists"]
    await redis.flushall()
    # No poller runs: the API process rebuilds on its own.
    await wait_until(lambda: _is(api, "000004", 200), message="device back after the flush")
    assert await _status(api, "000006") == 200
    device = (await api.client.get("/v1/devices/000004", headers=api.reader)).json()
    assert (device["owner_email"], device["state"]) == ("new@example.com", "paused")
    wiring = await open_poller(poller_settings())
    try:
        assert await wiring.registry.credentials("000004") == (fleet.devices["000004"].user, "rotated-code")
    finally:
        await wiring.close()


async def test_devices_held_only_by_an_older_redis_registry_are_adopted_before_a_flush(
    registry: Registry, redis: Redis, fleet: SimulatedFleet, poller_settings: Callable[..., PollerSettings]
) -> None:
    """A registry from before the table (Redis only, as ``registry`` is here) is copied into it on first start."""
    await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, "000005")))
    wiring = await open_poller(poller_settings())
    try:
        await create_tables(wiring.db_engine)
        assert await wiring.registry.ensure_loaded()
        assert not await wiring.registry.ensure_loaded()  # the marker says Redis holds the registry
        await redis.flushall()
        assert await wiring.registry.all_ids() == []
        assert await wiring.registry.ensure_loaded()
        assert await wiring.registry.all_ids() == ["000005"]
        creds = await wiring.registry.credentials("000005")
        assert creds == (fleet.devices["000005"].user, fleet.devices["000005"].password)
    finally:
        await wiring.close()


async def _asked(fleet: SimulatedFleet, cloud_id: str, times: int) -> bool:
    return len(fleet.times.get(cloud_id, [])) >= times


async def _is(api: Api, cloud_id: str, status: int) -> bool:
    return await _status(api, cloud_id) == status
