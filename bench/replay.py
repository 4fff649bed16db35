"""Replay benchmark.

(a) Replay of archived records (mirror from S3, DuckDB selection, annotation, batched PutRecords) onto Kinesis
    on a moto server, against a bare aiobotocore PutRecords loop over the same records with the same batch size.
    Every round runs in a fresh process on fresh streams and a fresh mirror cache; the order alternates by round
    (bare first in even rounds, replay first in odd ones); figures are medians over >= 3 rounds.
    ratio_vs_bare_putrecords = median bare seconds / median replay seconds (>= 0.9 is the goal).
(b) Compaction of records over many keys with the replay service's compaction SQL (arg_max per key, ordered,
    written to Parquet) against DuckDB's own arg_max query over the same files, each run in a fresh process,
    the order alternating by round, medians over the rounds.
    compaction_time_ratio_vs_duckdb = ours / DuckDB (<= 1.5 is the target); peak_rss_mib is our process's peak.

Usage: python bench/replay.py [--quick]   (last line printed: one JSON object)
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import inspect
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 500
# moto appends a Kinesis record in O(records already in the shard) (it lists the shard's keys to find the last
# sequence number), so a million records on a couple of shards is quadratic. Both runs use many shards to keep the
# emulator's own cost linear enough; they use the same count, so the comparison stays fair.
SHARDS = 64


def make_events(count: int, keys: int, *, start: int = 0) -> list[dict[str, Any]]:
    """Return ``count`` beacon events (numbered from ``start``) spread over ``keys`` ad ids and one day."""
    events = []
    for n in range(start, start + count):
        second = (n * 7919) % 86_400
        events.append(
            {
                "event_id": f"ev-{n:09d}",
                "type": "impression" if n % 10 else "click",
                "source": "beacon",
                "event_time": f"2026-11-24T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z",
                "received_at": "2026-11-24T23:59:59Z",
                "client_ip_hash": "3f1a9c",
                "ad_id": f"ad-{n % keys:07d}",
                "campaign_id": f"camp-{n % 97}",
                "placement": "top",
                "user_id": f"user-{n % 50_000}",
                "properties": {"n": n},
            }
        )
    return events


def write_archive_files(
    root: Path | None, events: list[dict[str, Any]], per_object: int, name: str = "bench"
) -> list[tuple[str, bytes]]:
    """Write hour-partitioned gzip JSON-line objects under ``root``; return (key, body) pairs."""
    by_hour: dict[str, list[bytes]] = {}
    for event in events:
        by_hour.setdefault(event["event_time"][11:13], []).append(orjson.dumps(event) + b"\n")
    objects = []
    for hour, lines in sorted(by_hour.items()):
        for part, start in enumerate(range(0, len(lines), per_object)):
            key = f"beacon/dt=2026-11-24/hour={hour}/{name}-{part:05d}.json.gz"
            body = gzip.compress(b"".join(lines[start : start + per_object]), compresslevel=1)
            objects.append((key, body))
            if root is not None:
                path = root / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
    return objects


# ---------------------------------------------------------------- (b) compaction


def _ours(cache_dir: str, out: str) -> tuple[float, float, int]:
    from services.replay.models import ReplayCreate
    from services.replay.pump import _write_selection
    from services.replay.sandbox import Sandbox

    started = time.perf_counter()
    sandbox = Sandbox(Path(cache_dir), raw_bucket="hw-raw", curated_bucket="hw-curated", live=None)
    request = ReplayCreate(query="SELECT * FROM raw_events", compact=True, key="ad_id")
    # pump's private helper gained keyword-only limits (timeout_s, max_rows); accept either signature.
    if "max_rows" in inspect.signature(_write_selection).parameters:
        rows = _write_selection(sandbox, request, Path(out), timeout_s=3600, max_rows=10**12)
    else:
        rows = _write_selection(sandbox, request, Path(out), 3600)
    sandbox.close()
    elapsed = time.perf_counter() - started
    return elapsed, _peak_rss_mib(), rows


def _peak_rss_mib() -> float:
    """Return this process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _duckdb(cache_dir: str, out: str) -> tuple[float, float, int]:
    import duckdb

    started = time.perf_counter()
    con = duckdb.connect(":memory:", config={"threads": 2})
    pattern = f"{cache_dir}/hw-raw/*/dt=*/hour=*/*.json.gz"
    con.execute(
        f"""COPY (
            SELECT j->>'ad_id' AS k, arg_max(line, TRY_CAST(j->>'event_time' AS TIMESTAMP)) AS last
            FROM (SELECT line, CAST(line AS JSON) AS j FROM read_csv('{pattern}', columns={{'line': 'VARCHAR'}},
                  delim='\\x1e', quote='', escape='', header=false, compression='gzip', auto_detect=false))
            GROUP BY k
        ) TO '{out}' (FORMAT parquet)"""
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    con.close()
    elapsed = time.perf_counter() - started
    return elapsed, _peak_rss_mib(), rows


def _in_child(fn_name: str, cache_dir: str, out: str) -> tuple[float, float, int]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(globals()[fn_name], (cache_dir, out))


def bench_compaction(records: int, keys: int, workdir: Path, rounds: int) -> dict[str, float]:
    cache = workdir / "cache"
    chunk = 500_000
    for start in range(0, records, chunk):
        events = make_events(min(chunk, records - start), keys, start=start)
        write_archive_files(cache / "hw-raw", events, per_object=50_000, name=f"chunk{start // chunk:03d}")
        del events
    # Each run in a fresh process; which side goes first alternates by round; the figure is the median.
    ours_times: list[float] = []
    duck_times: list[float] = []
    ours_rss = duck_rss = 0.0
    ours_rows = duck_rows = 0
    for number in range(rounds):
        for side in ("_ours", "_duckdb") if number % 2 == 0 else ("_duckdb", "_ours"):
            out = workdir / ("ours.parquet" if side == "_ours" else "duck.parquet")
            elapsed, rss, got = _in_child(side, str(cache), str(out))
            if side == "_ours":
                ours_times.append(elapsed)
                ours_rss, ours_rows = max(ours_rss, rss), got
            else:
                duck_times.append(elapsed)
                duck_rss, duck_rows = max(duck_rss, rss), got
    ours_s, duck_s = statistics.median(ours_times), statistics.median(duck_times)
    assert ours_rows == duck_rows == keys, (ours_rows, duck_rows, keys)
    return {
        "compaction_records": records,
        "compaction_keys": keys,
        "compaction_s": round(ours_s, 3),
        "duckdb_arg_max_s": round(duck_s, 3),
        "compaction_time_ratio_vs_duckdb": round(ours_s / duck_s, 3),
        "peak_rss_mib": round(ours_rss, 1),
        "duckdb_peak_rss_mib": round(duck_rss, 1),
    }


# ---------------------------------------------------------------- (a) replay vs bare PutRecords


def _replay_settings(endpoint: str, prefix: str, workdir: Path):  # type: ignore[no-untyped-def]
    from services.replay.settings import ReplaySettings

    os.environ["AWS_ENDPOINT_URL"] = endpoint
    return ReplaySettings(
        aws_endpoint_url=endpoint,
        resource_prefix=prefix,
        redis_url=os.environ.get("HEADWATER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        database_url=f"sqlite+aiosqlite:///{workdir / 'meta.db'}",
        data_dir=workdir / "data",
        log_json=True,
        log_level="WARNING",
    )


async def _archive(endpoint: str, prefix: str, workdir: Path, records: int) -> None:
    """Create the buckets and upload the archived records once; every round replays the same objects."""
    from shared.aws import AwsClients

    settings = _replay_settings(endpoint, prefix, workdir)
    events = make_events(records, max(1, records // 4))
    objects = write_archive_files(None, events, per_object=20_000)
    async with AwsClients(settings) as aws:
        s3 = await aws.get("s3")
        await s3.create_bucket(Bucket=settings.bucket("raw"))
        await s3.create_bucket(Bucket=settings.bucket("curated"))
        for key, body in objects:
            await s3.put_object(Bucket=settings.bucket("raw"), Key=key, Body=body)


async def _replay_round(
    endpoint: str, prefix: str, workdir: Path, records: int, order: list[str], tag: str
) -> dict[str, float]:
    """Time the bare PutRecords loop and the replay once each, in ``order``, on fresh streams."""
    from services.replay.models import ReplayCreate, ReplayJob
    from services.replay.progress import ProgressStore
    from services.replay.pump import run_replay
    from shared.aws import AwsClients
    from shared.db import create_engine, create_tables, session_factory
    from shared.redis import open_redis

    settings = _replay_settings(endpoint, prefix, workdir)
    lines = [(e["event_id"], orjson.dumps(e)) for e in make_events(records, max(1, records // 4))]
    times: dict[str, float] = {}
    async with AwsClients(settings) as aws:
        kinesis = await aws.get("kinesis")

        async def fresh_stream(name: str) -> str:
            await kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
            return name

        async def bare() -> None:
            # The same records, the same batch size, sequential PutRecords from memory.
            stream = await fresh_stream(f"{prefix}-bare-{tag}")
            started = time.perf_counter()
            for start in range(0, len(lines), BATCH):
                chunk = lines[start : start + BATCH]
                await kinesis.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": k} for k, d in chunk])
            times["bare"] = time.perf_counter() - started
            await kinesis.delete_stream(StreamName=stream)

        async def replay() -> None:
            target = await fresh_stream(f"{prefix}-replay-{tag}")
            engine = create_engine(settings)
            await create_tables(engine)
            sessions = session_factory(engine)
            job_id = f"bench-{tag}"
            request = ReplayCreate(query="SELECT * FROM raw_events", target_stream=target)
            async with sessions() as session:
                session.add(ReplayJob(id=job_id, target_stream=target, request_json=request.model_dump_json()))
                await session.commit()
            redis = open_redis(settings)
            store = ProgressStore(redis, settings.resource_prefix)
            started = time.perf_counter()
            state = await run_replay(job_id=job_id, settings=settings, aws=aws, store=store, sessions=sessions)
            times["replay"] = time.perf_counter() - started
            counters = await store.read(job_id)
            times["replay_emit"] = float(counters.get("emit_elapsed", 0.0))
            await redis.delete(f"{prefix}:replay:job:{job_id}")
            await redis.aclose()
            await engine.dispose()
            await kinesis.delete_stream(StreamName=target)
            assert state == "succeeded" and int(counters["emitted"]) == records, (state, counters)

        for side in order:
            await (bare() if side == "bare" else replay())
    return times


def _replay_round_in_process(*args: Any) -> dict[str, float]:
    args[2].mkdir(parents=True, exist_ok=True)  # a fresh mirror cache and job database per round
    return asyncio.run(_replay_round(*args))


def bench_replay(records: int, workdir: Path, endpoint: str, rounds: int) -> dict[str, Any]:
    """Alternate bare loop and replay over ``rounds`` rounds, each in a fresh process; report medians."""
    prefix = f"hwbench{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(_archive(endpoint, prefix, workdir, records))
    ctx = multiprocessing.get_context("spawn")
    per_round = []
    for number in range(rounds):
        order = ["bare", "replay"] if number % 2 == 0 else ["replay", "bare"]
        with ctx.Pool(1) as pool:
            times = pool.apply(
                _replay_round_in_process, (endpoint, prefix, workdir / f"round-{number}", records, order, str(number))
            )
        per_round.append({"order": order, **{k: round(v, 3) for k, v in times.items()}})
        print(f"replay round {number + 1}: {per_round[-1]}", file=sys.stderr)
    bare_s = statistics.median(r["bare"] for r in per_round)
    replay_s = statistics.median(r["replay"] for r in per_round)
    return {
        "replay_records": records,
        "replay_rounds": rounds,
        "bare_putrecords_s": round(bare_s, 3),
        "replay_s": round(replay_s, 3),
        "replay_emit_s": round(statistics.median(r["replay_emit"] for r in per_round), 3),
        "bare_records_per_s": round(records / bare_s),
        "replay_records_per_s": round(records / replay_s),
        "ratio_vs_bare_putrecords": round(bare_s / replay_s, 3),
        "replay_per_round": per_round,
    }


@contextmanager
def moto_server() -> Iterator[str]:
    """Run a moto server on a free port for the benchmark."""
    import httpx

    port = _free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield endpoint
    finally:
        moto.terminate()
        try:
            moto.wait(30)
        except subprocess.TimeoutExpired:  # a big emulator heap can take long to exit
            moto.kill()
            moto.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    parser.add_argument("--replay-records", type=int)
    parser.add_argument("--compact-records", type=int)
    parser.add_argument("--compact-keys", type=int)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (>= 3 for a figure)")
    args = parser.parse_args()
    replay_records = args.replay_records or (5_000 if args.quick else 1_000_000)
    compact_records = args.compact_records or (100_000 if args.quick else 5_000_000)
    compact_keys = args.compact_keys or compact_records // 10
    workdir = Path(tempfile.mkdtemp(prefix="hw-bench-replay-"))
    try:
        figures: dict[str, Any] = {"quick": args.quick}
        figures.update(bench_compaction(compact_records, compact_keys, workdir / "compaction", args.rounds))
        print(json.dumps(figures), file=sys.stderr)
        with moto_server() as endpoint:
            figures.update(bench_replay(replay_records, workdir / "replay", endpoint, args.rounds))
            print(json.dumps(figures), file=sys.stderr)  # kept even if tearing the emulator down fails
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
