"""Poller benchmark: how many devices one process keeps on schedule, and what a read costs.

The simulator runs in one process, each poller replica in its own process (``python -m
headwater.main poller``), all on a private Redis database. For each fleet size the devices are
registered, the replica(s) start, one tick warms up, and then every tick of the window is read
back from the poller's own per-tick counters in Redis:

  on_time_N      = reads that started within the tolerance and finished inside the interval,
                   over N devices x ticks (a device not polled at all counts as not on time)
  cpu_ms_per_read = poller process CPU (user+sys, from /proc) over the window / reads

``--quick`` measures 5,000 devices over 3 ticks (under a minute). The full run measures 1,000,
5,000 and 10,000 devices with one replica, then 5,000 with two replicas to show the split.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.poller.crypto import fernet_from_settings  # noqa: E402
from services.poller.keys import Keys  # noqa: E402
from services.poller.models import DeviceCreate  # noqa: E402
from services.poller.registry import Registry  # noqa: E402
from services.poller.settings import PollerSettings  # noqa: E402
from services.poller.shardmap import shard_map  # noqa: E402
from services.poller.simulator import device_credentials  # noqa: E402
from services.poller.stats import tick_stats  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PREFIX = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return a process's user+system CPU seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def sleep_until(wall: float) -> None:
    """Sleep until the wall clock reads ``wall``."""
    await asyncio.sleep(max(0.0, wall - time.time()))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(eagle_url: str, log_dir: Path, interval: float) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HEADWATER_REDIS_URL": REDIS_URL,
            "HEADWATER_RESOURCE_PREFIX": PREFIX,
            "HEADWATER_EAGLE_BASE_URL": eagle_url,
            "HEADWATER_LOG_DIR": str(log_dir),
            "HEADWATER_LOG_LEVEL": "WARNING",
            "HEADWATER_ENVIRONMENT": "local",
            "HEADWATER_POLL_INTERVAL_S": str(interval),
            "HEADWATER_HEARTBEAT_S": "1",
            "HEADWATER_LEASE_TTL_S": "4",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",  # rotation is off; never reach real AWS
        }
    )
    env.pop("HEADWATER_INGEST_API_KEY", None)
    return env


async def register_fleet(registry: Registry, count: int) -> None:
    for number in range(count):
        cloud_id = f"{number:06d}"
        user, password = device_credentials(cloud_id)
        device_in = DeviceCreate(cloud_id=cloud_id, owner_email=user, eagle_password=password)  # type: ignore[arg-type]
        await registry.create(device_in=device_in)


async def run_case(
    *, devices: int, replicas: int, ticks: int, interval: float, eagle_url: str, sim_pid: int
) -> dict[str, Any]:
    settings = PollerSettings(redis_url=REDIS_URL, resource_prefix=PREFIX, environment="local")
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    registry = Registry(redis, prefix=settings.redis_prefix, fernet=fernet_from_settings(settings), shard_count=64)
    keys = Keys(settings.redis_prefix)
    await register_fleet(registry, devices)
    log_dir = Path(tempfile.mkdtemp(prefix="poller-bench-"))
    env = base_env(eagle_url, log_dir, interval)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "headwater.main",
            "poller",
            "--replica-id",
            f"r{i}",
            "--rotate-every",
            "0",
            cwd=ROOT,
            env=env,
        )
        for i in range(replicas)
    ]
    try:
        # Wait until every shard is held, then skip one tick to warm up.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            split = await shard_map(registry=registry, lease_ttl_s=4)
            if all(s.owner for s in split.shards) and len(split.replicas) == replicas:
                break
            await asyncio.sleep(0.5)
        first = int(time.time() // interval) + 2
        await sleep_until(first * interval)
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        sim0 = cpu_seconds(sim_pid)
        last = first + ticks
        await sleep_until(last * interval)
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        sim1 = cpu_seconds(sim_pid)
        split = await shard_map(registry=registry, lease_ttl_s=4)
        await asyncio.sleep(interval + 2.5)  # the window's last polls finish and are flushed
        per_tick = [await tick_stats(redis, keys=keys, tick=t) for t in range(first, last)]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await proc.wait()
        await redis.flushdb()
        await redis.aclose()
    reads = sum(t["reads"] for t in per_tick)
    on_time = sum(t["on_time"] for t in per_tick)
    cpu = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {
        "devices": devices,
        "replicas": replicas,
        "ticks": ticks,
        "on_time": round(on_time / (devices * ticks), 5),
        "reads": reads,
        "late": sum(t["late"] for t in per_tick),
        "missed": sum(t["missed"] for t in per_tick),
        "failures": sum(t["failures"] for t in per_tick),
        "cpu_ms_per_read": round(1000 * cpu / max(reads, 1), 3),
        "poller_cpu_pct": round(100 * cpu / (ticks * interval), 1),
        "simulator_cpu_pct": round(100 * (sim1 - sim0) / (ticks * interval), 1),
        "devices_per_replica": {r.replica_id: r.devices for r in split.replicas},
        "per_tick_on_time": [t["on_time"] for t in per_tick],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 devices over 3 ticks (< 60 s)")
    parser.add_argument("--ticks", type=int, default=None)
    parser.add_argument("--interval", type=float, default=6.0)
    parser.add_argument("--latency", default="20-80ms")
    args = parser.parse_args()
    ticks = args.ticks or (3 if args.quick else 8)
    cases = [(5000, 1)] if args.quick else [(1000, 1), (5000, 1), (10000, 1), (5000, 2)]
    max_devices = max(n for n, _ in cases)
    port = free_port()
    sim_args = ["simulate-devices", "--count", str(max_devices), "--latency", args.latency, "--port", str(port)]
    sim_args += ["--local-share", "0"]  # every benchmarked device is a cloud device
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "headwater.main",
        *sim_args,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    eagle_url = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1) as probe:
            while True:
                try:
                    await probe.get(f"{eagle_url}/sim/stats")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        for devices, replicas in cases:
            result = await run_case(
                devices=devices,
                replicas=replicas,
                ticks=ticks,
                interval=args.interval,
                eagle_url=eagle_url,
                sim_pid=sim.pid,
            )
            results.append(result)
            print(orjson.dumps(result).decode(), file=sys.stderr, flush=True)
    finally:
        sim.terminate()
        await sim.wait()
    summary: dict[str, Any] = {}
    for result in results:
        if result["replicas"] == 1:
            summary[f"on_time_{result['devices']}"] = result["on_time"]
    single = [r for r in results if r["replicas"] == 1]
    headline = next((r for r in single if r["devices"] == 5000), single[-1])
    summary["cpu_ms_per_read"] = headline["cpu_ms_per_read"]
    for result in results:
        if result["replicas"] == 2:
            summary["on_time_5000_2_replicas"] = result["on_time"]
            summary["split_5000_2_replicas"] = result["devices_per_replica"]
    summary["ticks"] = ticks
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    asyncio.run(main())
