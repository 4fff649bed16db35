"""Run one chaos scenario: load flowing, the fault, then the scoreboard polled until every hop is exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shared.aws import AwsClients
from tests.chaos.conftest import ChaosMesh
from tests.chaos.load import LoadGenerator
from tests.chaos.observe import Observer
from tests.chaos.scoreboard import (
    HOPS,
    SCENARIOS,
    Observed,
    ScenarioResult,
    render_rows,
    score_row,
    write_reliability_md,
)

DAYS_PER_SCENARIO = 2
LOAD_BEFORE_FAULT_S = 3.0
LOAD_AFTER_FAULT_S = 2.0


def scenario_days(key: str) -> list[date]:
    """Return the scenario's own past days (no two scenarios share a day, so every count is exact)."""
    index = list(SCENARIOS).index(key)
    first = datetime.now(UTC).date() - timedelta(days=20 + (index + 1) * (DAYS_PER_SCENARIO + 1))
    return [first + timedelta(days=n) for n in range(DAYS_PER_SCENARIO)]


@dataclass
class Context:
    """What a fault function gets: the mesh, the running load, and a place for notes."""

    mesh: ChaosMesh
    load: LoadGenerator
    notes: list[str] = field(default_factory=list)


def create_load_jobs(mesh: ChaosMesh, key: str, days: list[date]) -> dict[str, int]:
    """Create the loader jobs of the scenario's days (ad events and meter reads into DuckDB)."""
    jobs = {}
    raw = mesh.settings.bucket("raw")
    with httpx.Client(timeout=60, headers=mesh.headers) as http:
        for table, source in (("ad_events", "beacon"), ("meter_reads", "meter_read")):
            body = {
                "name": f"chaos {key} {table}",
                "schema_name": table,
                "schema_version": 1,
                "source": f"s3://{raw}/{source}/dt=YYYY-MM-DD/",
                "start_date": days[0].isoformat(),
                "end_date": days[-1].isoformat(),
                "warehouse": "duckdb",
                "table": table,
            }
            response = http.post(f"{mesh.urls['loader']}/v1/jobs", json=body)
            assert response.status_code == 201, response.text
            jobs[table] = response.json()["id"]
    return jobs


async def score(mesh: ChaosMesh, days: list[date], acks: Any, *, full: bool) -> list[dict[str, Any]]:
    """Return the scoreboard rows of the scenario's days.

    ``full=False`` compares counts only (object names, manifests, SQL counts: cheap, for polling); ``full=True``
    reads every id from the archive, the Parquet and the warehouse, and the Kinesis stream.
    """
    observer = Observer(mesh.settings, mesh.urls["loader"], mesh.headers, mesh.data_dir)
    rows = []
    async with AwsClients(mesh.settings) as aws:
        kinesis = await observer.kinesis_ids(aws) if full else None
        for source in ("beacon", "meter_read"):
            acked_by_day = acks.by_day(source)
            for day in (d.isoformat() for d in days):
                acked = acked_by_day.get(day, set())
                if full:
                    archive, marker = await observer.archive(aws, source, day)
                    curated = await observer.curated(aws, source, day)
                else:
                    archive, marker = await observer.archive_count(aws, source, day)
                    curated = await observer.curated_count(aws, source, day)
                warehouse = await asyncio.to_thread(observer.warehouse_ids, source, day)
                hops = {"archive": archive, "marker": marker, "curated": curated}
                hops["warehouse"] = warehouse if warehouse is not None else Observed(ids=[])
                if source == "beacon":
                    hops["traffic"] = await asyncio.to_thread(observer.traffic, day)
                rows.append(score_row(day, source, acked, hops, kinesis))
    return rows


def spool_segments(mesh: ChaosMesh) -> int:
    """Return how many segments wait in the ingest spool (sealed or open with events)."""
    root = mesh.data_dir / "ingest" / "spool"
    return sum(1 for p in root.glob("slot-*/*.seg")) + sum(1 for p in root.glob("slot-*/*.open") if p.stat().st_size)


def run_scenario(
    mesh: ChaosMesh,
    key: str,
    fault: Callable[[Context], None],
    *,
    drain_timeout_s: float = 150.0,
    results_dir: Path | None = None,
    after_load: Callable[[Context, list[date]], None] | None = None,
) -> ScenarioResult:
    """Run ``fault`` with the load flowing; poll the scoreboard until exact; save, print and return the result."""
    days = scenario_days(key)
    create_load_jobs(mesh, key, days)
    load = LoadGenerator(ingest_url=mesh.urls["ingest"], key=mesh.admin_key, scenario=key, days=days).start()
    context = Context(mesh=mesh, load=load)
    time.sleep(LOAD_BEFORE_FAULT_S)  # the load's pace, not synchronisation: some events land before the fault
    try:
        fault(context)
    finally:
        fault_over = time.monotonic()
        time.sleep(LOAD_AFTER_FAULT_S)  # and some after it
        acks = load.stop()
    assert not load.failures, f"the load generator failed: {load.failures[:3]}"
    if after_load is not None:  # a second blow, timed against the pipeline rather than the load
        after_load(context, days)
    deadline = fault_over + drain_timeout_s
    rows: list[dict[str, Any]] = []
    drain_s: float | None = None
    hop_ready: dict[str, float] = {}  # when each hop first held exactly the acknowledged events, on every row
    while time.monotonic() < deadline:
        rows = asyncio.run(score(mesh, days, acks, full=False))
        for hop in HOPS:
            if hop not in hop_ready and all(r[hop] in (None, r["acknowledged"]) for r in rows):
                hop_ready[hop] = time.monotonic() - fault_over
        if all(r["exact"] for r in rows):
            rows = asyncio.run(score(mesh, days, acks, full=True))
            if all(r["exact"] for r in rows):
                drain_s = time.monotonic() - fault_over
                break
        time.sleep(1.0)
    if drain_s is None:  # the last look, with Kinesis, for the record
        rows = asyncio.run(score(mesh, days, acks, full=True))
    # The fleet through the poller: every meter read again after the fault, and no read archived twice.
    fresh_since = datetime.now(UTC) - timedelta(seconds=time.monotonic() - fault_over)
    poll_deadline = time.monotonic() + 60
    while (fresh := poller_reads_after(mesh, fresh_since)) < len(mesh.meters) and time.monotonic() < poll_deadline:
        time.sleep(1.0)
    reads, distinct_reads = asyncio.run(poller_archive(mesh))
    context.notes.append(
        f"poller: {fresh} of {len(mesh.meters)} simulated meters read again after the fault; "
        f"{reads} of its reads archived today, {reads - distinct_reads} twice"
    )
    if hop_ready:
        context.notes.append("after the fault, exact at: " + ", ".join(f"{h} {t:.0f}s" for h, t in hop_ready.items()))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(acks.statuses.items()))
    context.notes.append(f"ingest answers to the load during the scenario: {statuses}")
    result = ScenarioResult.from_rows(key, len(acks.sent), rows, drain_s, notes=context.notes)
    result.duplicated += reads - distinct_reads
    result.poller_fresh = fresh == len(mesh.meters)
    result.save(results_dir) if results_dir else result.save()
    write_reliability_md()
    print(
        f"\nscenario {key}: sent {result.sent}, acknowledged {result.acknowledged}, lost {result.lost}, "
        f"duplicated {result.duplicated}, drained in {result.drain_s} s\n{render_rows(rows)}"
    )
    return result


def assert_exact(result: ScenarioResult, mesh: ChaosMesh) -> None:
    """Fail with the scoreboard when a scenario lost or duplicated anything or never drained."""
    assert result.drain_s is not None and result.exact, (
        f"{result.key} not exact after the fault:\n{render_rows(result.rows)}\nup: {mesh.log_tail(1500)}"
    )
    assert result.acknowledged == result.sent, "every event sent was acknowledged in the end"
    assert result.poller_fresh, f"the poller stopped reading some meters: {result.notes}"


async def archive_progress(mesh: ChaosMesh, days: list[date], acks: Any) -> tuple[bool, int]:
    """Return whether every acknowledged event is archived (by count), and how many day markers are written."""
    observer = Observer(mesh.settings, mesh.urls["loader"], mesh.headers, mesh.data_dir)
    complete, markers = True, 0
    async with AwsClients(mesh.settings) as aws:
        for source in ("beacon", "meter_read"):
            acked_by_day = acks.by_day(source)
            for day in (d.isoformat() for d in days):
                archived, marker = await observer.archive_count(aws, source, day)
                complete = complete and archived.total == len(acked_by_day.get(day, ()))
                markers += marker.total > 0
    return complete, markers


def poller_reads_after(mesh: ChaosMesh, since: datetime) -> int:
    """Return how many registered meters have a latest reading taken after ``since``."""
    fresh = 0
    with httpx.Client(timeout=10, headers=mesh.headers) as http:
        for cloud_id in mesh.meters:
            response = http.get(f"{mesh.urls['poller']}/v1/devices/{cloud_id}/latest")
            if response.status_code == 200:
                taken = datetime.fromisoformat(response.json()["timestamp"].replace("Z", "+00:00"))
                fresh += taken > since
    return fresh


async def poller_archive(mesh: ChaosMesh) -> tuple[int, int]:
    """Return the poller's reads archived today: (records, distinct ids)."""
    observer = Observer(mesh.settings, mesh.urls["loader"], mesh.headers, mesh.data_dir)
    async with AwsClients(mesh.settings) as aws:
        archived, _ = await observer.archive(aws, "meter_read", datetime.now(UTC).date().isoformat())
    ids = [i for i in archived.ids or [] if i.startswith("meter-")]
    return len(ids), len(set(ids))
