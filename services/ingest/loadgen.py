"""Load generator: impressions at a set rate, each followed by a click with the click-through probability.

Open-loop pacing (requests are scheduled on a clock, not after the previous answer), so a slow server shows
up as latency and a lower achieved rate rather than being hidden by the client.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx


@dataclass
class LoadReport:
    """What a load run did."""

    impressions: int = 0
    clicks: int = 0
    requests: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def events(self) -> int:
        """Return the events sent and acknowledged or not (impressions + clicks)."""
        return self.impressions + self.clicks

    @property
    def achieved_rate(self) -> float:
        """Return events per second over the run."""
        return self.events / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, pct: float) -> float:
        """Return a latency percentile in ms (nearest rank)."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]

    def summary(self) -> dict[str, Any]:
        """Return the figures printed at the end of a run."""
        return {
            "impressions": self.impressions,
            "clicks": self.clicks,
            "requests": self.requests,
            "errors": self.errors,
            "statuses": dict(sorted(self.statuses.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_events_per_s": round(self.achieved_rate, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
        }


@dataclass
class LoadPlan:
    """What to send."""

    url: str
    rate: float = 50.0
    duration_s: float = 10.0
    ctr: float = 0.30
    ads: int = 10
    batch: int = 0
    api_key: str | None = None
    concurrency: int = 64
    seed: int | None = None
    days: list[date] = field(default_factory=list)
    id_prefix: str = ""


def _event_times(rng: random.Random, days: list[date], index: int) -> tuple[str, str] | None:
    """Return (impression time, click time) inside one of ``days`` (UTC), or None to let ingest stamp them."""
    if not days:
        return None
    day = days[index % len(days)]
    # Leave room for the click (up to 60 s after its impression) inside the same day.
    at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 86_340))
    click = at + timedelta(seconds=rng.uniform(0.5, 60))
    return at.isoformat().replace("+00:00", "Z"), click.isoformat().replace("+00:00", "Z")


def plan_events(plan: LoadPlan) -> list[dict[str, Any]]:
    """Return the impressions (and their clicks) of a run, in sending order.

    With ``plan.days`` the events carry client timestamps spread over those UTC days (for backfills and the
    demo); otherwise ingest stamps them on arrival.
    """
    rng = random.Random(plan.seed)
    events: list[dict[str, Any]] = []
    prefix = plan.id_prefix
    for index in range(max(1, int(plan.rate * plan.duration_s))):
        ad = f"ad-{rng.randrange(plan.ads)}"
        user = f"u-{rng.randrange(1_000_000)}"
        times = _event_times(rng, plan.days, index)
        impression = {"type": "impression", "ad_id": ad, "user_id": user, "event_id": f"{prefix}{uuid.uuid4().hex}"}
        if times:
            impression["event_time"] = times[0]
        events.append(impression)
        if rng.random() < plan.ctr:
            click = {"type": "click", "ad_id": ad, "user_id": user, "event_id": f"{prefix}{uuid.uuid4().hex}"}
            if times:
                click["event_time"] = times[1]
            events.append(click)
    return events


async def run_load(
    plan: LoadPlan, *, events: list[dict[str, Any]] | None = None, progress: Callable[[int], None] | None = None
) -> LoadReport:
    """Send the planned events (as beacons, or as POST /v1/events batches) and report what happened."""
    events = events if events is not None else plan_events(plan)
    report = LoadReport()
    headers = {"Authorization": f"Bearer {plan.api_key}"} if plan.api_key else {}
    units: list[list[dict[str, Any]]] = (
        [events[i : i + plan.batch] for i in range(0, len(events), plan.batch)] if plan.batch else [[e] for e in events]
    )
    interval = plan.duration_s / max(1, len(units))
    gate = asyncio.Semaphore(plan.concurrency)
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)

    async def send(http: httpx.AsyncClient, unit: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        try:
            if plan.batch:
                response = await http.post("/v1/events", json={"events": unit}, headers=headers)
            else:
                event = unit[0]
                params = {k: v for k, v in event.items() if k != "type"} | {"response": "204"}
                response = await http.get(f"/v1/beacons/{event['type']}", params=params)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        finally:
            gate.release()
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        report.requests += 1
        report.statuses[status] = report.statuses.get(status, 0) + 1
        if status not in (200, 202, 204):
            report.errors += 1
        for event in unit:
            if event["type"] == "impression":
                report.impressions += 1
            else:
                report.clicks += 1
        if progress is not None:
            progress(sum(1 for event in unit if event["type"] == "impression"))

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=plan.url, timeout=30, limits=limits) as http:
        tasks = []
        for index, unit in enumerate(units):
            delay = started + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            tasks.append(asyncio.create_task(send(http, unit)))
        await asyncio.gather(*tasks)
    report.elapsed_s = time.perf_counter() - started
    return report
