"""The polling loop against the simulator and Redis: readings, auth failures, back-off, schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from services.poller.models import DeviceCreate, DeviceUpdate
from services.poller.registry import Registry
from services.poller.simulator import SimulatedFleet
from services.poller.stats import STAT_FIELDS
from tests.helpers import wait_until
from tests.poller.conftest import device_record


async def register(registry: Registry, fleet: SimulatedFleet, *ids: str, **overrides: Any) -> None:
    for cloud_id in ids:
        await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, cloud_id, **overrides)))


async def test_readings_reach_hourly_log_latest_and_counters(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any], tmp_path: Any
) -> None:
    await register(registry, fleet, "000001", "000002")
    await start_poller()

    async def _counted() -> bool:
        device = await registry.get("000001")
        return device.total_events_logged >= 3

    await wait_until(_counted, timeout=10, message="three readings of 000001")
    latest = orjson.loads(await registry.latest("000001"))
    assert latest["cloud_id"] == "000001" and latest["demand_kw"] > 0
    assert latest["timestamp"].endswith("Z")
    device = await registry.get("000001")
    assert device.first_timestamp and device.last_timestamp and device.first_timestamp < device.last_timestamp
    files = sorted((tmp_path / "logs").glob("*/iseif-rainforest-000001-*.jl"))
    assert files and files[0].parent.name in files[0].name
    lines = [orjson.loads(line) for line in files[0].read_bytes().splitlines()]
    assert lines and all(line["cloud_id"] == "000001" for line in lines)


async def test_auth_failure_stops_polling_until_credentials_change(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any], captured_logs: Any
) -> None:
    await register(registry, fleet, "000001")
    await register(registry, fleet, "000007", eagle_password="wrong-password-xyz")
    await start_poller()

    async def _failed() -> bool:
        return (await registry.get("000007")).state == "auth_failed"

    await wait_until(_failed, timeout=10, message="000007 marked auth_failed")
    asked = fleet.requests["000007"]
    healthy_before = fleet.requests["000001"]
    await wait_until(
        lambda: _async(fleet.requests["000001"] >= healthy_before + 4), timeout=10, message="healthy keeps polling"
    )
    assert fleet.requests["000007"] == asked, "a device that failed authentication was polled again"
    device = await registry.get("000007")
    # The cloud refuses with HTTP 200 and an error body, as the Eagle APIs do; that is auth_failed, not unreachable.
    assert device.last_error and "credentials refused" in device.last_error

    real = fleet.devices["000007"].password
    await registry.update(cloud_id="000007", device_in=DeviceUpdate.model_validate({"eagle_password": real}))
    assert (await registry.get("000007")).state == "active"
    await wait_until(
        lambda: _async(fleet.requests["000007"] > asked), timeout=10, message="polling resumes with new credentials"
    )

    async def _logged() -> bool:
        return (await registry.get("000007")).total_events_logged > 0

    await wait_until(_logged, timeout=10, message="readings after the credential change")
    logged = "\n".join(f"{call.method_name} {call.kwargs!r}" for call in captured_logs.calls)
    assert "device_auth_failed" in logged
    assert "wrong-password-xyz" not in logged and real not in logged


async def test_unreachable_device_backs_off_and_recovers(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any]
) -> None:
    await register(registry, fleet, "000001", "000002", "000003")
    fleet.set_mode("000002", "hang")
    fleet.set_mode("000003", "error")
    poller = await start_poller()

    async def _unreachable() -> bool:
        return (await registry.get("000002")).state == "unreachable" and (
            await registry.get("000003")
        ).state == "unreachable"

    await wait_until(_unreachable, timeout=10, message="both marked unreachable")
    healthy_start = fleet.requests["000001"]
    failing_start = fleet.requests["000003"]
    await wait_until(
        lambda: _async(fleet.requests["000001"] >= healthy_start + 12), timeout=15, message="12 healthy ticks"
    )
    # 12 ticks of back-off 1, 2, 4, 8 ticks: at most 4 more tries, where a healthy device had 12.
    assert fleet.requests["000003"] - failing_start <= 4
    assert poller.entries["000003"].failures >= 3
    on_time = poller.stats.totals
    assert on_time[2] > 0  # the healthy device kept being read on time

    fleet.set_mode("000003", "ok")
    fleet.set_mode("000002", "ok")

    async def _recovered() -> bool:
        states = {(await registry.get(c)).state for c in ("000002", "000003")}
        return states == {"active"}

    await wait_until(_recovered, timeout=15, message="devices recover on their own within the back-off cap")
    assert (await registry.get("000003")).last_error is None


async def test_schedule_has_no_drift_and_slow_devices_delay_nobody(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any], redis: Redis
) -> None:
    ids = [f"{n:06d}" for n in range(10)]
    await register(registry, fleet, *ids)
    for slow in ids[:3]:
        fleet.set_mode(slow, "slow")  # 100-200 ms per answer, under the 300 ms timeout
    fleet.set_mode(ids[3], "hang")
    poller = await start_poller()
    await wait_until(lambda: _async(len(fleet.times.get(ids[9], [])) >= 16), timeout=15, message="16 ticks")
    interval = poller.interval
    for cloud_id in ids[4:]:
        times = fleet.times[cloud_id]
        # Position of each request relative to the first one's grid: jitter is allowed, a trend is not.
        errors = [(t - times[0]) - round((t - times[0]) / interval) * interval for t in times]
        assert max(abs(e) for e in errors) < 0.15, f"{cloud_id} strayed from its slot: {errors}"
        half = len(errors) // 2
        early, late = sorted(errors[:half])[half // 2], sorted(errors[half:])[(len(errors) - half) // 2]
        assert abs(late - early) < 0.03, f"{cloud_id} drifted: median offset {early:.3f}s then {late:.3f}s"
        assert round((times[-1] - times[0]) / interval) == len(times) - 1, f"{cloud_id} skipped a tick"
    totals = dict(zip(STAT_FIELDS, poller.stats.totals, strict=True))
    assert totals["missed"] == 0, totals
    assert totals["late"] <= 0.02 * totals["reads"], totals


async def _async_value(value: Any) -> Any:
    return value


def _async(value: Any) -> Any:
    return _async_value(value)
