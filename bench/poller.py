"""Poller benchmark: how many devices one process keeps on schedule, and what a read costs.

Run as deployed: each poller replica is its own process (``python -m headwater.main poller``) with
forwarding on -- it posts every reading to a real ingest app (``services.ingest.app`` under uvicorn,
on a moto server, with its own ingest:write key) that the benchmark starts. The simulated fleet
(``services.poller.simulator.SimulatedFleet``, all cloud devices) runs in a process of its own behind a
small recording wrapper (``--serve-simulator``) that notes, for every ``get_instantaneous_demand``,
the wall-clock time the device was asked and the time its answer left. For each fleet size the
devices are registered, the replica(s) start, one tick warms up, and the window's ticks are judged
from the simulator's timestamps, not the poller's own counters:

  on_time_N      = device-ticks whose device was asked within on_time_tolerance_s (1 s) of its slot
                   (tick start + the device's phase, as services/poller/polling.py schedules it) and
                   answered before the slot + interval, over N devices x ticks (not asked = not on time)
  cpu_ms_per_read = poller process CPU (user+sys, from /proc) over the window / demand answers in it
                   (the CPU of posting the readings to ingest included)

The poller's own per-tick counters are reported beside (``poller_counted_on_time``), and so are the
warnings the poller logged about ingest (``ingest_post_failures``: failed/rejected posts, overflow).

``--quick`` measures 5,000 devices over 3 ticks (about a minute). The full run measures 1,000,
5,000 and 10,000 devices with one replica, then 5,000 with two replicas to show the split.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stack import cpu_seconds, free_port, new_stack  # noqa: E402

from services.poller.crypto import fernet_from_settings  # noqa: E402
from services.poller.keys import Keys, phase_of  # noqa: E402
from services.poller.models import DeviceCreate  # noqa: E402
from services.poller.registry import Registry  # noqa: E402
from services.poller.settings import PollerSettings  # noqa: E402
from services.poller.shardmap import shard_map  # noqa: E402
from services.poller.simulator import device_credentials  # noqa: E402
from services.poller.stats import tick_stats  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# ingest gets a database of its own, so flushing the poller's between cases leaves ingest's dedup keys alone.
INGEST_REDIS_URL = os.environ.get("BENCH_INGEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = "bench"
DEMAND = re.compile(rb"<Name>\s*get_instantaneous_demand\s*</Name>", re.IGNORECASE)
INGEST_TROUBLE = (b"ingest_post_failed", b"ingest_rejected_batch", b"ingest_buffer_overflow")


# ---------------------------------------------------------------- the simulator, recording when it was asked


class AskRecorder:
    """ASGI wrapper over a SimulatedFleet: note (cloud id, asked at, answered at) of every demand request."""

    def __init__(self, fleet: Any) -> None:
        self.fleet = fleet
        self.asks: list[tuple[str, float, float]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/bench/asks":
            # Hand over what was recorded so far and start afresh (one call per measured case).
            asks, self.asks = self.asks, []
            payload = orjson.dumps(asks)
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        asked = time.time()
        body = bytearray()

        async def tee() -> dict[str, Any]:
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        async def noting_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and DEMAND.search(body):
                cloud_id = dict(scope["headers"]).get(b"cloud-id", b"").decode()
                self.asks.append((cloud_id, asked, time.time()))

        await self.fleet(scope, tee, noting_send)


def serve_simulator(count: int, latency: str, port: int) -> None:
    """Serve ``count`` cloud Eagles on ``port`` behind the recorder (run in its own process)."""
    import uvicorn

    from services.poller.simulator import SimulatedFleet, parse_latency

    fleet = SimulatedFleet(count=count, latency=parse_latency(latency))
    # The simulator's own server settings (services/poller/simulator.py: simulator_server), on the recorder.
    config = uvicorn.Config(
        AskRecorder(fleet),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        backlog=4096,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run()


def judge_on_time(
    asks: list[list[Any]], *, devices: int, first: int, last: int, interval: float, tolerance: float
) -> tuple[int, int, dict[str, float]]:
    """Return (on-time device-ticks, demand answers in the window, ask-delay percentiles) from the simulator."""
    # The poller's slots (services/poller/polling.py): n_slots per tick, a device always in slot phase * n_slots.
    n_slots = max(1, round(interval / min(0.05, interval / 20)))
    slot_width = interval / n_slots
    by_device: dict[str, list[tuple[float, float]]] = defaultdict(list)
    answered = 0
    delays: list[float] = []  # asked - the slot it belongs to: where "late" comes from
    for cloud_id, asked, done in asks:
        by_device[cloud_id].append((asked, done))
        if first * interval <= asked < last * interval:
            answered += 1
            offset = int(phase_of(cloud_id) * n_slots) * slot_width
            delays.append((asked - offset) % interval)
    on_time = 0
    for number in range(devices):
        cloud_id = f"{number:06d}"
        slot = int(phase_of(cloud_id) * n_slots)
        times = by_device.get(cloud_id, [])
        for tick in range(first, last):
            due = (tick * n_slots + slot) * slot_width
            # A few ms of slack before the slot: the poller's monotonic mapping of wall time may round that way.
            if any(due - 0.01 <= asked <= due + tolerance and done <= due + interval for asked, done in times):
                on_time += 1
    delays.sort()
    pick = lambda q: round(1000 * delays[min(len(delays) - 1, int(q * len(delays)))], 1) if delays else None  # noqa: E731
    return on_time, answered, {"ask_delay_ms_p50": pick(0.5), "ask_delay_ms_p99": pick(0.99)}


# ---------------------------------------------------------------- the measured cases


async def sleep_until(wall: float) -> None:
    """Sleep until the wall clock reads ``wall``."""
    await asyncio.sleep(max(0.0, wall - time.time()))


def poller_env(eagle_url: str, log_dir: Path, interval: float, ingest_url: str, ingest_key: str) -> dict[str, str]:
    """Return a replica's environment: the benchmark's Redis and fleet, forwarding on to the benchmark's ingest."""
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
            "HEADWATER_INGEST_URL": ingest_url,
            "HEADWATER_INGEST_API_KEY": ingest_key,
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",  # rotation is off; never reach real AWS
        }
    )
    return env


async def ingest_meter_read_posts(client: httpx.AsyncClient, ingest_url: str) -> int:
    """Return how many POST /v1/meter-reads ingest answered 202 so far (its Prometheus request counter)."""
    text = (await client.get(f"{ingest_url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("headwater_http_requests_total{") and "/v1/meter-reads" in line and '"202"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def register_fleet(registry: Registry, count: int) -> None:
    for number in range(count):
        cloud_id = f"{number:06d}"
        user, password = device_credentials(cloud_id)
        device_in = DeviceCreate(cloud_id=cloud_id, owner_email=user, eagle_password=password)  # type: ignore[arg-type]
        await registry.create(device_in=device_in)


async def run_case(
    *,
    devices: int,
    replicas: int,
    ticks: int,
    interval: float,
    eagle_url: str,
    sim_pid: int,
    ingest_url: str,
    ingest_key: str,
    home: Path,
) -> dict[str, Any]:
    settings = PollerSettings(redis_url=REDIS_URL, resource_prefix=PREFIX, environment="local")
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    registry = Registry(redis, prefix=settings.redis_prefix, fernet=fernet_from_settings(settings), shard_count=64)
    keys = Keys(settings.redis_prefix)
    await register_fleet(registry, devices)
    log_dir = Path(tempfile.mkdtemp(prefix="poller-bench-", dir=home))
    env = poller_env(eagle_url, log_dir, interval, ingest_url, ingest_key)
    outputs = [(log_dir / f"replica-{i}.out").open("wb") for i in range(replicas)]
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
            stdout=outputs[i],
            stderr=outputs[i],
        )
        for i in range(replicas)
    ]
    async with httpx.AsyncClient(timeout=60) as client:
        try:
            posts0 = await ingest_meter_read_posts(client, ingest_url)
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
            asks = (await client.get(f"{eagle_url}/bench/asks")).json()
            posts = await ingest_meter_read_posts(client, ingest_url) - posts0
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                await proc.wait()
            for output in outputs:
                output.close()
            await redis.flushdb()
            await redis.aclose()
    on_time, answered, delays = judge_on_time(
        asks, devices=devices, first=first, last=last, interval=interval, tolerance=settings.on_time_tolerance_s
    )
    logs = b"".join((log_dir / f"replica-{i}.out").read_bytes() for i in range(replicas))
    reads = sum(t["reads"] for t in per_tick)
    cpu = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    return {
        "devices": devices,
        "replicas": replicas,
        "ticks": ticks,
        "on_time": round(on_time / (devices * ticks), 5),
        "demand_answers": answered,
        **delays,
        "poller_counted_on_time": round(sum(t["on_time"] for t in per_tick) / (devices * ticks), 5),
        "reads": reads,
        "late": sum(t["late"] for t in per_tick),
        "missed": sum(t["missed"] for t in per_tick),
        "failures": sum(t["failures"] for t in per_tick),
        "ingest_post_failures": sum(logs.count(word) for word in INGEST_TROUBLE),
        "ingest_posts_accepted": posts,
        "cpu_ms_per_read": round(1000 * cpu / max(answered, 1), 3),
        "poller_cpu_pct": round(100 * cpu / (ticks * interval), 1),
        "simulator_cpu_pct": round(100 * (sim1 - sim0) / (ticks * interval), 1),
        "devices_per_replica": {r.replica_id: r.devices for r in split.replicas},
        "per_tick_on_time": [t["on_time"] for t in per_tick],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 devices over 3 ticks (about a minute)")
    parser.add_argument("--ticks", type=int, default=None)
    parser.add_argument("--interval", type=float, default=6.0)
    parser.add_argument("--latency", default="20-80ms")
    parser.add_argument("--devices", type=int, default=None, help="measure only this fleet size, one replica")
    args = parser.parse_args()
    ticks = args.ticks or (3 if args.quick else 8)
    cases = [(5000, 1)] if args.quick else [(1000, 1), (5000, 1), (10000, 1), (5000, 2)]
    cases = [(args.devices, 1)] if args.devices else cases
    max_devices = max(n for n, _ in cases)
    home = Path(tempfile.mkdtemp(prefix="hw-bench-poller-"))
    stack = new_stack(home, INGEST_REDIS_URL, f"pb{uuid.uuid4().hex[:6]}")
    port = free_port()
    sim = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-simulator", str(max_devices), "--latency", args.latency, "--port", str(port)
    )
    eagle_url = f"http://127.0.0.1:{port}"
    results: list[dict[str, Any]] = []
    try:
        started = time.monotonic()
        stack.start_moto()
        ingest_url, ingest_key = await asyncio.to_thread(stack.start_ingest)
        print(f"ingest ready at {ingest_url} in {time.monotonic() - started:.1f}s", file=sys.stderr)
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
                ingest_url=ingest_url,
                ingest_key=ingest_key,
                home=home,
            )
            results.append(result)
            print(orjson.dumps(result).decode(), file=sys.stderr, flush=True)
    finally:
        sim.terminate()
        await sim.wait()
        stack.stop()
        shutil.rmtree(home, ignore_errors=True)
    summary: dict[str, Any] = {}
    for result in results:
        if result["replicas"] == 1:
            summary[f"on_time_{result['devices']}"] = result["on_time"]
            summary[f"poller_counted_on_time_{result['devices']}"] = result["poller_counted_on_time"]
    single = [r for r in results if r["replicas"] == 1]
    headline = next((r for r in single if r["devices"] == 10000), single[-1])
    summary["cpu_ms_per_read"] = headline["cpu_ms_per_read"]
    summary["cpu_ms_per_read_devices"] = headline["devices"]
    summary["ingest_post_failures"] = sum(r["ingest_post_failures"] for r in results)
    summary["ingest_posts_accepted"] = sum(r["ingest_posts_accepted"] for r in results)
    for result in results:
        if result["replicas"] == 2:
            summary["on_time_5000_2_replicas"] = result["on_time"]
            summary["split_5000_2_replicas"] = result["devices_per_replica"]
    summary["ticks"] = ticks
    summary["forwarding"] = "on: every reading posted to a real ingest (services.ingest.app) started by the bench"
    print(orjson.dumps(summary).decode())


if __name__ == "__main__":
    if "--serve-simulator" in sys.argv:  # the simulator's own process: uvicorn runs its loop itself
        sim_args = sys.argv[sys.argv.index("--serve-simulator") + 1 :]
        serve_simulator(
            int(sim_args[0]),
            sim_args[sim_args.index("--latency") + 1],
            int(sim_args[sim_args.index("--port") + 1]),
        )
    else:
        asyncio.run(main())
