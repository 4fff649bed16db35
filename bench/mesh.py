"""Mesh benchmark: the whole mesh under `headwater up`, end to end, plus freshness of the live and daily paths.

What it does:
1. Starts ``headwater up`` (five services, their workers, moto, a private redis-server) on free ports with a
   temporary data dir and resource prefix, the device simulator off; waits until every service is ready.
2. Creates a DuckDB load job for ``ad_events`` over one past day D (so the day is "closed" from the start).
3. Pushes impressions and clicks dated on D for ``--minutes`` (5 full; ~45 s ``--quick``) as POST /v1/events
   batches of 500 at ``--rate`` events/s (open loop). An event counts as acknowledged only when its batch got
   202 with ``accepted`` equal to the batch size.
4. Meanwhile, freshness probes: one event at a time (stamped now by ingest); from its 202, poll replay's
   ``POST /v1/query`` (``SELECT count(*) FROM all_events WHERE event_id = ...``) until it is visible.
5. After the push: waits for D's final ``_COMPLETE`` marker and for the loader run of D to reach ``loaded`` with
   every acknowledged row; then stops the mesh and opens the warehouse file read-only to check that every
   acknowledged event id is there (the benchmark fails, exit 1, if one is missing).
6. Samples the RSS of every process of the mesh once a second (current and peak, by process).

Figures (last line, one JSON object):
  mesh_events_per_s   acknowledged events / (D's rows loaded in DuckDB - first push): ingest -> S3 -> transform
                      -> DuckDB end to end, including the close of the day
  ingest_events_per_s acknowledged events / push seconds (what ingest sustained while the rest ran)
  freshness_p99_s     p99 of accepted -> visible in /v1/query over all_events (live path); p50 and max beside
  day_to_warehouse_s  D's last _COMPLETE marker (S3 LastModified) -> the loader run's finished_at
  lag_*               per stage at the close of D: last archive object after the push, marker after the push,
                      run created / transform / load after the marker
  rss_mib             per process: peak and last RSS
Usage: python bench/mesh.py [--quick] [--minutes M] [--rate R]   (--quick takes ~2 minutes: start-up and the
close of the day come on top of the 45 s push)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stack import free_port  # noqa: E402

BATCH = 500
SERVICES = ("ingest", "transform", "loader", "replay", "poller")


# ---------------------------------------------------------------- the mesh


def start_mesh(home: Path, prefix: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start ``headwater up`` on free ports in ``home``; return it and the environment it runs with."""
    env = {
        "HEADWATER_DATA_DIR": str(home),
        "HEADWATER_RESOURCE_PREFIX": prefix,
        # A Redis URL nobody answers: `up` then starts a private redis-server (never the shared one's data).
        "HEADWATER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'headwater.db'}",
        "HEADWATER_MOTO_PORT": str(free_port()),
        "HEADWATER_SIMULATED_DEVICES": "0",
        "HEADWATER_SIMULATOR_PORT": str(free_port()),
        "HEADWATER_STARTUP_TIMEOUT_S": "300",
        "HEADWATER_LOG_LEVEL": "WARNING",
        **{f"HEADWATER_{name.upper()}_PORT": str(free_port()) for name in SERVICES},
    }
    for name in ("AWS_ENDPOINT_URL", "HEADWATER_AWS_ENDPOINT_URL", "HEADWATER_INGEST_URL"):
        os.environ.pop(name, None)  # `up` starts its own emulator; never point it at another one
    log = (home / "up.log").open("ab")
    up = subprocess.Popen(
        [sys.executable, "-m", "headwater.main", "up"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + 330
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise SystemExit(f"headwater up exited with {up.returncode}; see {home / 'up.log'}")
        if (home / "mesh.json").exists() and all(_ready(env, name) for name in SERVICES):
            break
        time.sleep(1)
    else:
        up.send_signal(signal.SIGTERM)
        raise SystemExit(f"the mesh was not ready in time; see {home / 'up.log'}")
    env |= json.loads((home / "mesh.json").read_text())
    return up, env


def _ready(env: dict[str, str], service: str) -> bool:
    try:
        url = f"http://127.0.0.1:{env[f'HEADWATER_{service.upper()}_PORT']}/readyz"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_mesh(up: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``headwater up`` (it stops every child), then wait."""
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
    try:
        up.wait(90)
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait(10)


def process_name(proc: psutil.Process) -> str:
    """Return a short name for a mesh process: ingest, loader-worker, moto, redis..."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    for service in SERVICES:
        if f"services.{service}.worker" in cmd:
            return f"{service}-worker"
        if f"services.{service}.app" in cmd:
            return service
    for word in ("moto.server", "redis-server", "simulate-devices"):
        if word in cmd:
            return word.split(".")[0]
    return "headwater-up" if "headwater.main up" in cmd else cmd[:40]


class RssSampler(threading.Thread):
    """Sample the RSS of ``headwater up`` and all its descendants once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    mib = proc.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                name = f"{process_name(proc)}"
                self.last[name] = round(mib, 1)
                self.peak[name] = round(max(self.peak.get(name, 0.0), mib), 1)

    def figures(self) -> dict[str, dict[str, float]]:
        """Return {process: {peak, last}} in MiB."""
        return {name: {"peak": self.peak[name], "last": self.last[name]} for name in sorted(self.peak)}


# ---------------------------------------------------------------- load and probes


def day_events(run: str, day: date, start: int, count: int) -> list[dict[str, Any]]:
    """Return ``count`` impressions and clicks (1 in 4) numbered from ``start``, spread over ``day``."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    events = []
    for n in range(start, start + count):
        at = midnight + timedelta(seconds=(n * 7919) % 86_000)
        events.append(
            {
                "type": "click" if n % 4 == 3 else "impression",
                "event_id": f"{run}-{n:09d}",
                "ad_id": f"ad-{n % 50}",
                "user_id": f"u-{n % 100_000}",
                "event_time": at.isoformat().replace("+00:00", "Z"),
            }
        )
    return events


async def push(
    http: httpx.AsyncClient, *, run: str, day: date, rate: float, seconds: float
) -> tuple[set[str], dict[str, Any]]:
    """Send batches open-loop at ``rate`` events/s for ``seconds``; return acknowledged ids and a summary."""
    acked: set[str] = set()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    gate = asyncio.Semaphore(16)
    interval = BATCH / rate
    started = time.perf_counter()

    async def send(batch: list[dict[str, Any]]) -> None:
        sent = time.perf_counter()
        try:
            response = await http.post("/v1/events", json={"events": batch})
            status = str(response.status_code)
            if response.status_code == 202 and response.json().get("accepted") == len(batch):
                acked.update(event["event_id"] for event in batch)
            elif response.status_code == 202:
                status = "202-partial"
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        finally:
            gate.release()
        latencies.append(time.perf_counter() - sent)
        statuses[status] = statuses.get(status, 0) + 1

    tasks = []
    number = 0
    while time.perf_counter() - started < seconds:
        delay = started + number * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(send(day_events(run, day, number * BATCH, BATCH))))
        number += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return acked, {
        "push_end": datetime.now(UTC),  # the last answer, not the end of the probes running beside
        "sent_events": number * BATCH,
        "push_s": round(elapsed, 1),
        "statuses": statuses,
        "batch_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
    }


async def probe_freshness(
    ingest: httpx.AsyncClient, replay: httpx.AsyncClient, *, run: str, until: float, every: float
) -> dict[str, Any]:
    """Send one probe event at a time until ``until`` (monotonic); return accepted -> visible percentiles."""
    seen: list[float] = []
    lost = 0
    refused: list[str] = []
    number = 0
    while time.monotonic() < until:
        event_id = f"{run}-probe-{number:05d}"
        number += 1
        probe = {"type": "impression", "event_id": event_id, "ad_id": "ad-probe", "user_id": "u-probe"}
        answer = await ingest.post("/v1/events", json={"events": [probe]})
        accepted = time.monotonic()
        if answer.status_code != 202:
            refused.append(f"{answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(every)
            continue
        now = datetime.now(UTC)
        body = {
            "sql": f"SELECT count(*) AS n FROM all_events WHERE event_id = '{event_id}'",
            "format": "jsonl",
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        }
        while True:
            response = await replay.post("/v1/query", json=body)
            if response.status_code == 200 and '"n":1' in response.text.replace(" ", ""):
                seen.append(time.monotonic() - accepted)
                break
            if time.monotonic() - accepted > 60:
                lost += 1
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, every - (time.monotonic() - accepted)))
    seen.sort()
    pick = lambda q: round(seen[min(len(seen) - 1, int(q * len(seen)))], 3) if seen else None  # noqa: E731
    return {
        "freshness_p99_s": pick(0.99),
        "freshness_p50_s": pick(0.5),
        "freshness_max_s": round(seen[-1], 3) if seen else None,
        "freshness_probes": len(seen),
        "freshness_lost": lost,
        "freshness_refused": len(refused),
        "freshness_first_refusal": refused[0] if refused else None,
    }


# ---------------------------------------------------------------- close of the day


async def wait_close(
    s3: Any, loader: httpx.AsyncClient, *, raw_bucket: str, job_id: int, day: date, rows: int, push_end: datetime
) -> dict[str, Any]:
    """Wait for D's last marker and its loader run with ``rows`` rows; return the stage lags."""
    key = f"beacon/dt={day.isoformat()}/_COMPLETE"
    marker: datetime | None = None
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            head = await s3.head_object(Bucket=raw_bucket, Key=key)
            # A marker written during the push is rewritten once the day has been quiet after it.
            if head["LastModified"] >= push_end - timedelta(seconds=1):
                marker = head["LastModified"]
                break
        except Exception:
            pass
        await asyncio.sleep(0.5)
    if marker is None:
        raise SystemExit(f"no _COMPLETE marker for {day} after the push")
    run: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        runs = (await loader.get(f"/v1/jobs/{job_id}/runs")).json()
        mine = [r for r in runs if r["dt"] == day.isoformat()]
        if mine and mine[0]["state"] == "failed":
            raise SystemExit(f"loading {day} failed: {mine[0]['error']}")
        if mine and mine[0]["state"] == "loaded" and (mine[0]["rows_loaded"] or 0) >= rows:
            run = mine[0]
            break
        await asyncio.sleep(0.5)
    if run is None:
        raise SystemExit(f"{day} was not loaded with {rows} rows in time")
    listing = await s3.list_objects_v2(Bucket=raw_bucket, Prefix=f"beacon/dt={day.isoformat()}/")
    last_object = max(o["LastModified"] for o in listing.get("Contents", []) if o["Key"].endswith(".json.gz"))

    def at(field: str) -> datetime:
        value = datetime.fromisoformat(run[field].replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=UTC)  # the loader stores UTC

    return {
        "day_to_warehouse_s": round((at("finished_at") - marker).total_seconds(), 2),
        "lag_archive_after_push_s": round((last_object - push_end).total_seconds(), 2),
        "lag_marker_after_push_s": round((marker - push_end).total_seconds(), 2),
        "lag_run_created_after_marker_s": round((at("created_at") - marker).total_seconds(), 2),
        "lag_transform_s": round((at("load_started_at") - at("transform_started_at")).total_seconds(), 2),
        "lag_load_s": round((at("finished_at") - at("load_started_at")).total_seconds(), 2),
        "rows_loaded": run["rows_loaded"],
        "loaded_at": at("finished_at"),
    }


def warehouse_ids(home: Path, day: date) -> tuple[set[str], int]:
    """Return the event ids of ``day`` in the DuckDB warehouse (read-only, mesh stopped) and the row count."""
    import duckdb

    path = home / "loader" / "warehouse.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("SELECT event_id FROM ad_events WHERE dt = ?", [day]).fetchall()
    return {row[0] for row in rows}, len(rows)


# ---------------------------------------------------------------- main


async def measure(env: dict[str, str], home: Path, *, seconds: float, rate: float, probe_every: float) -> dict:
    """Create the job, push and probe, wait for the close of the day; return the figures."""
    from headwater.config import CliSettings
    from shared.aws import AwsClients

    os.environ.update(env)
    settings = CliSettings()
    key = (home / "admin.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    url = settings.service_url
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    run = f"mesh{uuid.uuid4().hex[:6]}"
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with (
        httpx.AsyncClient(base_url=url("ingest"), headers=headers, timeout=60, limits=limits) as ingest,
        httpx.AsyncClient(base_url=url("ingest"), headers=headers, timeout=60) as probe_ingest,
        httpx.AsyncClient(base_url=url("replay"), headers=headers, timeout=60) as replay,
        httpx.AsyncClient(base_url=url("loader"), headers=headers, timeout=60) as loader,
        AwsClients(settings) as aws,
    ):
        raw = settings.bucket("raw")
        job = {
            "name": f"mesh bench {run}",
            "schema_name": "ad_events",
            "schema_version": 1,
            "source": f"s3://{raw}/beacon/dt=YYYY-MM-DD/",
            "start_date": day.isoformat(),
            "end_date": day.isoformat(),
            "warehouse": "duckdb",
            "table": "ad_events",
        }
        created = await loader.post("/v1/jobs", json=job)
        if created.status_code != 201:
            raise SystemExit(f"creating the load job failed: {created.status_code} {created.text[:300]}")
        job_id = created.json()["id"]
        push_start = datetime.now(UTC)
        (acked, pushed), fresh = await asyncio.gather(
            push(ingest, run=run, day=day, rate=rate, seconds=seconds),
            probe_freshness(probe_ingest, replay, run=run, until=time.monotonic() + seconds, every=probe_every),
        )
        push_end = pushed.pop("push_end")
        print(f"pushed: {pushed}; freshness: {fresh}", file=sys.stderr)
        close = await wait_close(
            await aws.get("s3"), loader, raw_bucket=raw, job_id=job_id, day=day, rows=len(acked), push_end=push_end
        )
    loaded_at = close.pop("loaded_at")
    return {
        "day": day.isoformat(),
        "acked": acked,
        "mesh_events_per_s": round(len(acked) / (loaded_at - push_start).total_seconds(), 1),
        "ingest_events_per_s": round(len(acked) / pushed["push_s"], 1),
        "acknowledged_events": len(acked),
        **pushed,
        **fresh,
        **close,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 45 s push (about 2 minutes in all)")
    parser.add_argument("--minutes", type=float, default=None, help="push duration (default 5, quick 0.75)")
    parser.add_argument("--rate", type=float, default=None, help="events/s offered (default 2000, quick 1000)")
    parser.add_argument("--probe-every", type=float, default=1.0, help="seconds between freshness probes")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs, warehouse)")
    args = parser.parse_args()
    seconds = 60 * (args.minutes or (0.75 if args.quick else 5.0))
    rate = args.rate or (1000.0 if args.quick else 2000.0)
    home = Path(tempfile.mkdtemp(prefix="hw-bench-mesh-"))
    started = time.monotonic()
    up, env = start_mesh(home, f"mb{uuid.uuid4().hex[:6]}")
    print(f"mesh ready in {time.monotonic() - started:.0f}s (data dir {home})", file=sys.stderr)
    sampler = RssSampler(up.pid)
    sampler.start()
    try:
        figures = asyncio.run(measure(env, home, seconds=seconds, rate=rate, probe_every=args.probe_every))
    finally:
        sampler.done.set()
        stop_mesh(up)
    acked: set[str] = figures.pop("acked")
    in_warehouse, rows = warehouse_ids(home, date.fromisoformat(figures["day"]))
    missing = acked - in_warehouse
    figures |= {
        "missing_in_warehouse": len(missing),
        "duplicates_in_warehouse": rows - len(in_warehouse),
        "rss_mib": sampler.figures(),
        "offered_events_per_s": rate,
        "quick": args.quick,
        "total_s": round(time.monotonic() - started, 1),
    }
    if not args.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(figures, default=str))
    if missing:
        print(f"FAIL: {len(missing)} acknowledged events missing from the warehouse, e.g. {sorted(missing)[:3]}")
        print(json.dumps(figures, default=str))
        sys.exit(1)


if __name__ == "__main__":
    main()
