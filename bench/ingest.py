"""Ingest benchmark: single-beacon and batched throughput of one ingest process, against a bare FastAPI app.

Everything runs here, driven by Debian's ``wrk`` (``apt-get install -y wrk``):
  1. a bare FastAPI app (one uvicorn process) answering 204 to ``GET /v1/beacons/impression``: the baseline;
  2. one ingest process (same uvicorn flags) with its spool and shipper on, against a private moto server and
     the local Redis (its own database and resource prefix):
     - single beacons: ``GET /v1/beacons/impression?...&response=204`` (each event fsync'd before the answer);
     - batches: ``POST /v1/events`` with 500 events per request (a wrk Lua script sets body and API key);
  3. after the load stops, how fast the shipper empties the spool, and how busy the emulator is meanwhile;
  4. with ingest stopped, the same kind of sink calls made bare (PutObject of a segment's gzip lines, then
     PutRecords of 500 records, one call at a time) against the same moto: the emulator's own ceiling.
  5. Segment ``/v1/batch`` (100 track messages a request, as analytics-python sends them) against plain
     ``/v1/events`` batches of the same size (100 impressions/clicks; 500 as well, reported beside), all with client
     ids (one dedup claim per event on each side), on ingest processes with the shipper held off (nothing sealed or
     shipped during the runs), a fresh process per round (one process for ``--quick``), kinds alternating in order
     (Segment first in odd rounds), a second of warm-up each, medians of at least 3 rounds; only the ingest
     process's CPU (user + system from /proc) is counted. ``--segment-only`` runs this part alone.
The servers under test run pinned to one CPU, wrk and moto to the other(s).

Figures: ratio_single_vs_bare = ingest single rps / bare rps; ratio_batch_vs_single = batch events/s /
single-beacon events/s; p99_ms = p99 latency of single beacons; ratio_shipper_vs_bare_sink = shipper drain
events/s / bare sink calls events/s; cpu_us_* = CPU the ingest process spent per event (steadier than rates on a
busy machine); segment_cpu_ratio_vs_batch = median over rounds of (ingest CPU per Segment event / per plain
batch event), both batches of 100 events (same size: the per-request cost is spread alike);
``segment_cpu_ratio_vs_batch500`` against plain batches of 500, for reference. ``--quick`` runs in about a
minute. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.auth import create_api_key  # noqa: E402
from shared.bootstrap import ensure_buckets, ensure_streams  # noqa: E402
from shared.db import create_engine, create_tables, session_factory  # noqa: E402
from shared.settings import HeadwaterSettings  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
PREFIX = f"bench{os.getpid()}"
UVICORN_FLAGS = [
    "--host",
    "127.0.0.1",
    "--no-access-log",
    "--log-level",
    "warning",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
]
INGEST_COMMAND = [sys.executable, "-m", "uvicorn", "--factory", "services.ingest.app:create_app", *UVICORN_FLAGS]
BEACON_PATH = "/v1/beacons/impression?ad_id=ad-1&campaign_id=c-1&placement=top&user_id=u-1&response=204"
BATCH_SIZE = 500
SEGMENT_BATCH_SIZE = 100  # analytics-python's default upload_size
EVENT_SHARDS = 200


# "One ingest process, one core": the servers under test (ingest, and the bare app in its turn) share one CPU;
# wrk and the emulator get the others, so the client and the AWS endpoint do not eat the server's core.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS = {_CPUS[0]}
CLIENT_CPUS = set(_CPUS[1:]) or SERVER_CPUS


def pinned(cpus: set[int]) -> Any:
    """Return a preexec_fn that pins the child process (and its threads) to ``cpus``."""
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_app() -> Any:
    """Return the baseline: a FastAPI app that answers 204 and does nothing else."""
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.get("/v1/beacons/impression")
    async def impression() -> Response:
        return Response(status_code=204)

    return app


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def run_wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, float]:
    """Run wrk and return requests/s, p99 latency (ms) and non-2xx/socket errors."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "30s"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, preexec_fn=pinned(CLIENT_CPUS)
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    sockets = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    requests = re.search(r"(\d+) requests in", out)
    return {
        "rps": rps,
        "p99_ms": p99_ms,
        "errors": errors,
        "socket_errors": sockets,
        "requests": int(requests.group(1)) if requests else 0,
    }


def sample_record() -> dict[str, Any]:
    """Return an archived beacon record shaped like the ones the batches produce."""
    return {
        "event_id": os.urandom(16).hex(),
        "type": "impression",
        "source": "beacon",
        "event_time": "2026-11-25T12:00:00.000Z",
        "received_at": "2026-11-25T12:00:00.000Z",
        "client_ip_hash": os.urandom(16).hex(),
        "ad_id": "ad-7",
        "campaign_id": "c-1",
        "placement": "top",
        "user_id": "u-123",
        "properties": {},
    }


def batch_script(path: Path, api_key: str, *, with_ids: bool = False, size: int = BATCH_SIZE, run: int = 0) -> Path:
    """Write a wrk script posting plain ``/v1/events`` batches of ``size`` impressions and clicks.

    ``with_ids``: every event carries a fresh ``event_id`` (run, wrk thread, request counter), so each takes the
    same Redis dedup claim as a Segment message with its messageId, and none is a duplicate.
    """
    events = [
        {
            "type": "impression" if i % 3 else "click",
            "ad_id": f"ad-{i % 20}",
            "campaign_id": "c-1",
            "placement": "top",
            "user_id": f"u-{i}",
            **({"event_id": f"EVID-{i}"} if with_ids else {}),
        }
        for i in range(size)
    ]
    body = json.dumps({"events": events}).replace("\\", "\\\\").replace('"', '\\"')
    if not with_ids:
        path.write_text(
            'wrk.method = "POST"\n'
            f'wrk.body = "{body}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {api_key}"\n'
        )
        return path
    return _fresh_ids_script(path, body, "EVID", run, {"Authorization": f"Bearer {api_key}"})


def _fresh_ids_script(path: Path, template: str, marker: str, run: int, headers: dict[str, str]) -> Path:
    """Write a wrk script sending ``template`` with ``marker`` replaced per request by a unique prefix."""
    header_lua = "".join(f", ['{name}'] = '{value}'" for name, value in headers.items())
    path.write_text(
        f'local template = "{template}"\n'
        "local counter = 0\n"
        "local threads = 0\n"
        "function setup(thread) threads = threads + 1; thread:set('tid', threads) end\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        f"  local body = template:gsub('{marker}', 'r{run}t' .. tostring(tid) .. 'n' .. counter)\n"
        f"  return wrk.format('POST', nil, {{['Content-Type'] = 'application/json'{header_lua}}}, body)\n"
        "end\n"
    )
    return path


def segment_script(path: Path, api_key: str, run: int) -> Path:
    """Write a wrk script posting Segment /v1/batch bodies of 100 track messages, as analytics-python sends them.

    Every request gets fresh messageIds (run, wrk thread, request counter), so none is a duplicate.
    """
    messages = [
        {
            "integrations": {},
            "properties": {"ad_id": f"ad-{i % 20}", "placement": "top"},
            "timestamp": "2026-11-25T12:00:00.000+00:00",
            "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
            "userId": f"u-{i}",
            "type": "track",
            "event": "Ad Viewed",
            "messageId": f"MSGID-{i}",
        }
        for i in range(SEGMENT_BATCH_SIZE)
    ]
    body = json.dumps({"batch": messages, "sentAt": "2026-11-25T12:00:01+00:00", "writeKey": api_key})
    template = body.replace("\\", "\\\\").replace('"', '\\"')
    auth = base64.b64encode(f"{api_key}:".encode()).decode()
    return _fresh_ids_script(path, template, "MSGID", run, {"Authorization": f"Basic {auth}"})


def start(command: list[str], env: dict[str, str], log: Path, cpus: set[int]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"), preexec_fn=pinned(cpus))


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_wrk(pid: int, url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, float]:
    """Run wrk and add the CPU seconds the server process used meanwhile."""
    before = cpu_seconds(pid)
    run = run_wrk(url, seconds, connections, script)
    return {**run, "cpu_s": cpu_seconds(pid) - before}


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})?\s+([\d.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def spool_drained(base: str, timeout: float) -> float | None:
    """Wait until ingest's spool is empty; return how long that took (None at the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if metric(httpx.get(f"{base}/metrics", timeout=5).text, "headwater_ingest_spool_bytes") == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


async def prepare(settings: HeadwaterSettings) -> str:
    """Create the buckets, streams and metadata tables; return an ingest:write key."""
    from shared.aws import AwsClients

    async with AwsClients(settings) as aws:
        await ensure_buckets(await aws.get("s3"), settings)
        # A stream sized for the load (real Kinesis takes 1,000 records/s per shard). It also keeps the emulator's
        # PutRecords fast: moto finds a shard's last sequence number by listing all its records (O(n) per record).
        kinesis = await aws.get("kinesis")
        await kinesis.create_stream(StreamName=settings.stream("events"), ShardCount=EVENT_SHARDS)
        await ensure_streams(kinesis, settings)
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            return await create_api_key(session=session, scopes=["ingest:write"])
    finally:
        await engine.dispose()


SEGMENT_EVENTS = 10_000  # about one spool segment (4 MiB) of beacon records


async def bare_sink_rate(settings: HeadwaterSettings, line: bytes, seconds: float) -> float:
    """Events/s of bare sink calls against the same emulator, shaped like the shipper's work for one segment:
    one PutObject of the gzip JSON lines, then PutRecords calls of 500 records (one at a time, as the shipper)."""
    import gzip

    from shared.aws import AwsClients

    async with AwsClients(settings) as aws:
        s3, kinesis = await aws.get("s3"), await aws.get("kinesis")
        body = gzip.compress(line * SEGMENT_EVENTS, mtime=0)
        events, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            await s3.put_object(Bucket=settings.bucket("raw"), Key=f"bench-baseline/{events}.json.gz", Body=body)
            for _ in range(SEGMENT_EVENTS // BATCH_SIZE):
                records = [{"Data": line, "PartitionKey": os.urandom(16).hex()} for _ in range(BATCH_SIZE)]
                await kinesis.put_records(StreamName=settings.stream("events"), Records=records)
            events += SEGMENT_EVENTS
        return events / (time.monotonic() - started)


async def cleanup_redis() -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{PREFIX}:*", count=1000)]
        for start_index in range(0, len(keys), 500):
            await redis.delete(*keys[start_index : start_index + 500])
    finally:
        await redis.aclose()


# Held off for the CPU comparison: no segment is sealed or shipped while it runs, so neither path pays for
# shipping (the same code for both, at the emulator's pace, whatever the request rate) or for the other's backlog.
SHIPPER_HELD_OFF = {
    "HEADWATER_FLUSH_INTERVAL_S": "86400",
    "HEADWATER_SPOOL_SEGMENT_MAX_EVENTS": str(10**9),
    "HEADWATER_SPOOL_SEGMENT_MAX_BYTES": str(8 * 1024**3),
    "HEADWATER_SPOOL_MAX_BYTES": str(8 * 1024**3),
    "HEADWATER_SHUTDOWN_DRAIN_S": "0",
}


def compare_segment_cpu(
    *,
    work: Path,
    env: dict[str, str],
    api_key: str,
    rounds: int,
    seconds: int,
    connections: int,
    fresh_process_per_round: bool,
    processes: list[subprocess.Popen[bytes]],
) -> dict[str, Any]:
    """Return the CPU per event of Segment ``/v1/batch`` (100 messages) vs plain ``/v1/events`` batches of 100
    (the goal's figure: same size) and of 500 (for reference).

    Fair by construction: both carry client ids (one dedup claim per event on both sides), the runs alternate
    (plain first in even rounds, Segment first in odd ones), each round gets a fresh ingest process (full run) with
    its own data dir and the shipper held off, a second of warm-up precedes each timed run, and only the ingest
    process's CPU is counted. Figures are medians over the rounds; the ratio is the median of the rounds' ratios.
    """
    kinds = {
        "plain": (
            "/v1/events",
            BATCH_SIZE,
            lambda run: batch_script(work / f"plain-{run}.lua", api_key, with_ids=True, run=run),
        ),
        "plain100": (
            "/v1/events",
            SEGMENT_BATCH_SIZE,
            lambda run: batch_script(
                work / f"plain100-{run}.lua", api_key, with_ids=True, size=SEGMENT_BATCH_SIZE, run=run
            ),
        ),
        "segment": (
            "/v1/batch",
            SEGMENT_BATCH_SIZE,
            lambda run: segment_script(work / f"segment-{run}.lua", api_key, run),
        ),
    }
    cpu_us: dict[str, list[float]] = {kind: [] for kind in kinds}
    errors, ratios, ratios500 = 0, [], []
    process: subprocess.Popen[bytes] | None = None
    base = ""
    for round_index in range(rounds):
        if process is None or fresh_process_per_round:
            if process is not None:
                stop(process)
                shutil.rmtree(work / f"cmp-{round_index - 1}", ignore_errors=True)
            port = free_port()
            process = start(
                [*INGEST_COMMAND, "--port", str(port)],
                {**env, **SHIPPER_HELD_OFF, "HEADWATER_DATA_DIR": str(work / f"cmp-{round_index}")},
                work / "ingest-cmp.log",
                SERVER_CPUS,
            )
            processes.append(process)
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/readyz", timeout=180)  # a busy machine can take minutes to start a process
        order = list(kinds) if round_index % 2 == 0 else list(reversed(kinds))
        for kind in order:
            path, size, script_for = kinds[kind]
            run_number = 2 * round_index + (10_000 if kind == "plain100" else 0)
            run_wrk(f"{base}{path}", 1, connections, script_for(run_number + 1_000))  # warm-up, not counted
            run = timed_wrk(process.pid, f"{base}{path}", seconds, connections, script_for(run_number))
            errors += int(run["errors"] + run["socket_errors"])
            cpu_us[kind].append(1e6 * run["cpu_s"] / max(1, size * run["requests"]))
        ratios500.append(cpu_us["segment"][-1] / cpu_us["plain"][-1])
        ratios.append(cpu_us["segment"][-1] / cpu_us["plain100"][-1])
    return {
        # The goal's figure: the same batch size on both sides (100 events a request).
        "segment_cpu_ratio_vs_batch": round(statistics.median(ratios), 2),
        "segment_batch_events": SEGMENT_BATCH_SIZE,
        "plain_batch_events_compared": SEGMENT_BATCH_SIZE,
        "segment_cpu_ratio_rounds": [round(ratio, 2) for ratio in ratios],
        "cpu_us_per_segment_event": round(statistics.median(cpu_us["segment"]), 2),
        "cpu_us_per_plain100_event_with_ids": round(statistics.median(cpu_us["plain100"]), 2),
        # For reference: plain batches of 500 spread their per-request cost over 5x the events.
        "segment_cpu_ratio_vs_batch500": round(statistics.median(ratios500), 2),
        "cpu_us_per_plain_event_with_ids": round(statistics.median(cpu_us["plain"]), 2),
        "segment_cpu_us_rounds": [round(value, 2) for value in cpu_us["segment"]],
        "plain100_cpu_us_rounds": [round(value, 2) for value in cpu_us["plain100"]],
        "segment_comparison_errors": errors,
        "segment_comparison_rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (under a minute)")
    parser.add_argument(
        "--segment-only", action="store_true", help="only the Segment /v1/batch vs /v1/events CPU comparison"
    )
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=args.serve_bare,
            access_log=False,
            log_level="warning",
            loop="uvloop",
            http="httptools",
        )
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")

    rounds, seconds = (2, 3) if args.quick else (3, 10)
    # Every acknowledged beacon waits for an fsync group, so one connection's rate is bounded by fsync latency
    # (0.5-5 ms on this shared disk); a collector serves many concurrent clients, so both apps get 256.
    connections = int(os.environ.get("BENCH_CONNECTIONS", "256"))
    # The same holds for batches: with few connections the server idles while each batch waits for its fsync.
    batch_connections = int(os.environ.get("BENCH_BATCH_CONNECTIONS", "32"))
    work = Path(tempfile.mkdtemp(prefix="hw-bench-ingest-"))
    moto_port, bare_port, ingest_port = free_port(), free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "HEADWATER_ENVIRONMENT": "local",
        "HEADWATER_LOG_LEVEL": "WARNING",
        "HEADWATER_REDIS_URL": REDIS_URL,
        "HEADWATER_RESOURCE_PREFIX": PREFIX,
        "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'meta.db'}",
        "HEADWATER_DATA_DIR": str(work / "data"),
        "HEADWATER_BEACON_RATE_PER_S": "1000000000",
        "HEADWATER_BEACON_BURST": "1000000000",
        "HEADWATER_CLOUDWATCH_ENABLED": "false",
        "HEADWATER_GC_TUNING": "true",  # as the server entry points run it (mesh, compose, chart)
        "HEADWATER_SPOOL_MAX_BYTES": str(2 * 1024**3),
    }
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        env.pop(var, None)
    processes: list[subprocess.Popen[bytes]] = []
    figures: dict[str, Any] = {}
    try:
        moto = start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            env,
            work / "moto.log",
            CLIENT_CPUS,
        )
        processes.append(moto)
        wait_http(f"{endpoint}/moto-api/")
        os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "HEADWATER_"))})
        settings = HeadwaterSettings()
        api_key = asyncio.run(prepare(settings))

        if not args.segment_only:
            bare = start(
                [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)],
                env,
                work / "bare.log",
                SERVER_CPUS,
            )
            ingest = start(
                [*INGEST_COMMAND, "--port", str(ingest_port)],
                env,
                work / "ingest.log",
                SERVER_CPUS,
            )
            processes += [bare, ingest]
            bare_url = f"http://127.0.0.1:{bare_port}{BEACON_PATH}"
            base = f"http://127.0.0.1:{ingest_port}"
            wait_http(bare_url)
            wait_http(f"{base}/readyz")

            # Both servers stay up; their runs alternate so that load from elsewhere on the machine hits both alike.
            sent = (
                run_wrk(bare_url, 1, connections)["requests"] * 0
                + run_wrk(f"{base}{BEACON_PATH}", 1, connections)["requests"]
            )
            bare_runs, single_runs, batch_runs = [], [], []
            script = batch_script(work / "batch.lua", api_key)
            for _ in range(rounds):
                bare_runs.append(run_wrk(bare_url, seconds, connections))
                single_runs.append(timed_wrk(ingest.pid, f"{base}{BEACON_PATH}", seconds, connections))
            spool_drained(base, 10 if args.quick else 120)  # batches start with an idle shipper
            for _ in range(rounds):
                batch_runs.append(timed_wrk(ingest.pid, f"{base}/v1/events", seconds, batch_connections, script))
            sent += sum(run["requests"] for run in single_runs) + BATCH_SIZE * sum(
                run["requests"] for run in batch_runs
            )

            load_stopped, cpu_at_stop, moto_at_stop = time.monotonic(), cpu_seconds(ingest.pid), cpu_seconds(moto.pid)
            shipped_at_stop = metric(
                httpx.get(f"{base}/metrics", timeout=5).text, "headwater_ingest_shipped_events_total"
            )
            drained_after = spool_drained(base, 4 if args.quick else 240)
            drain_window, drain_cpu = time.monotonic() - load_stopped, cpu_seconds(ingest.pid) - cpu_at_stop
            moto_share = (cpu_seconds(moto.pid) - moto_at_stop) / drain_window
            shipped = metric(httpx.get(f"{base}/metrics", timeout=5).text, "headwater_ingest_shipped_events_total")
            # Is the emulator the limit? The same kind of calls, bare, against the same moto with ingest stopped.
            stop(ingest)
            line = orjson.dumps(sample_record()) + b"\n"
            bare_sink = asyncio.run(bare_sink_rate(settings, line, 3 if args.quick else 20))
            drain_rate = (shipped - shipped_at_stop) / drain_window

            bare_rps = statistics.median(run["rps"] for run in bare_runs)
            single_rps = statistics.median(run["rps"] for run in single_runs)
            batch_events = BATCH_SIZE * statistics.median(run["rps"] for run in batch_runs)
            # CPU the ingest process spent per event (shipper included): steadier than rates on a busy machine.
            single_cpu_us = 1e6 * sum(r["cpu_s"] for r in single_runs) / max(1, sum(r["requests"] for r in single_runs))
            batch_cpu_us = (
                1e6 * sum(r["cpu_s"] for r in batch_runs) / max(1, BATCH_SIZE * sum(r["requests"] for r in batch_runs))
            )
            figures = {
                "ratio_single_vs_bare": round(single_rps / bare_rps, 3),
                "ratio_batch_vs_single": round(batch_events / single_rps, 2),
                "single_rps": round(single_rps, 1),
                "batch_events_per_s": round(batch_events, 1),
                "p99_ms": round(statistics.median(run["p99_ms"] for run in single_runs), 2),
                "cpu_us_per_single": round(single_cpu_us, 1),
                "cpu_us_per_batch_event": round(batch_cpu_us, 2),
                "cpu_ratio_single_vs_batch_event": round(single_cpu_us / batch_cpu_us, 2) if batch_cpu_us else None,
                "bare_rps": round(bare_rps, 1),
                "bare_p99_ms": round(statistics.median(run["p99_ms"] for run in bare_runs), 2),
                "errors": int(sum(run["errors"] for run in bare_runs + single_runs + batch_runs)),
                "socket_errors": int(sum(run["socket_errors"] for run in bare_runs + single_runs + batch_runs)),
                "sent_events": int(sent),
                "shipped_events": int(shipped),
                "shipper_drain_s": round(drained_after, 2) if drained_after is not None else None,
                "shipper_drain_events_per_s": round(drain_rate, 1),
                "bare_sink_events_per_s": round(bare_sink, 1),
                "ratio_shipper_vs_bare_sink": round(drain_rate / bare_sink, 3),
                "moto_cpu_share_during_drain": round(moto_share, 2),
                "cpu_us_per_shipped_event": round(1e6 * drain_cpu / (shipped - shipped_at_stop), 2)
                if shipped > shipped_at_stop
                else None,
                "connections": connections,
                "batch_connections": batch_connections,
                "rounds": rounds,
                "seconds_per_run": seconds,
            }
        # Segment /v1/batch vs plain /v1/events batches, both with client ids: the CPU per event of each path.
        figures.update(
            compare_segment_cpu(
                work=work,
                env=env,
                api_key=api_key,
                rounds=max(3, rounds),
                seconds=2 if args.quick else seconds,
                connections=batch_connections,
                fresh_process_per_round=not args.quick,
                processes=processes,
            )
        )
    finally:
        for process in reversed(processes):
            stop(process)
        asyncio.run(cleanup_redis())
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
