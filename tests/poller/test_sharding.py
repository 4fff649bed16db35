"""Two replicas share the fleet through shard leases and rebalance when one dies."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from services.poller.models import DeviceCreate
from services.poller.polling import Poller
from services.poller.registry import Registry
from services.poller.shardmap import shard_map
from services.poller.simulator import SimulatedFleet
from tests.helpers import wait_until
from tests.poller.conftest import device_record


def owners(*pollers: Poller) -> dict[str, int]:
    return {p.settings.replica_id: len(p.leases.owned) for p in pollers}


def min_gap(times: list[float]) -> float:
    return min((b - a for a, b in itertools.pairwise(times)), default=99.0)


async def test_two_replicas_share_the_fleet_and_rebalance_when_one_is_killed(
    registry: Registry, fleet: SimulatedFleet, start_poller: Callable[..., Any]
) -> None:
    for cloud_id in fleet.devices:
        await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, cloud_id)))
    # One-second ticks: a "second poll in the same tick" must then be closer than half a second, which
    # scheduling jitter on a loaded machine does not produce.
    fast = {"poll_interval_s": 1.0, "request_timeout_s": 0.8}
    first = await start_poller(replica_id="replica-a", **fast)
    await wait_until(lambda: _value(owners(first) == {"replica-a": 8}), timeout=5, message="a owns all")
    second = await start_poller(replica_id="replica-b", **fast)
    await wait_until(
        lambda: _value(owners(first, second) == {"replica-a": 4, "replica-b": 4}), timeout=10, message="even split"
    )
    split = await shard_map(registry=registry, lease_ttl_s=1.0)
    assert {r.replica_id: len(r.shards) for r in split.replicas} == {"replica-a": 4, "replica-b": 4}
    assert sum(r.devices for r in split.replicas) == len(fleet.devices)

    # Both replicas poll: every device keeps being read, none twice within a tick across the hand-over.
    mark = {c: fleet.requests[c] for c in fleet.devices}
    await wait_until(
        lambda: _value(all(fleet.requests[c] >= mark[c] + 3 for c in fleet.devices)), timeout=10, message="all polled"
    )
    assert first.stats.totals[1] > 0 and second.stats.totals[1] > 0

    await first.crash()  # no lease release, no goodbye: leases must lapse
    await wait_until(lambda: _value(owners(second) == {"replica-b": 8}), timeout=30, message="b takes over all")
    mark = {c: fleet.requests[c] for c in fleet.devices}
    await wait_until(
        lambda: _value(all(fleet.requests[c] >= mark[c] + 1 for c in fleet.devices)),
        timeout=2 * second.interval + 2,
        message="every device polled again right after the rebalance",
    )
    for cloud_id, times in fleet.times.items():
        assert min_gap(times) > second.interval / 2, f"{cloud_id} polled twice in one tick: {min_gap(times):.3f}s apart"


async def _awaitable(value: Any) -> Any:
    return value


def _value(value: Any) -> Any:
    return _awaitable(value)
