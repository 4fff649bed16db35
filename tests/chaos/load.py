"""The load that keeps flowing during a fault, and what ingest acknowledged of it.

Ad events go in as JSON beacons (one event a request) and as batches of ``POST /v1/events``; meter reads as
batches of ``POST /v1/meter-reads``, all with event times spread over the scenario's own past days. Every request is
retried with the same event ids until ingest acknowledges each event (``accepted`` or ``duplicate``), honouring
Retry-After, as a well-behaved client does: what ingest acknowledged is recorded per (source, day), and that is
what the scoreboard holds the mesh to.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

ADS = ("chaos-ad-1", "chaos-ad-2", "chaos-ad-3", "chaos-ad-4")
ACKED = ("accepted", "duplicate")
HOURS = (9, 14, 21)


@dataclass
class Acks:
    """What the load generator sent and what ingest acknowledged."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # event id -> event
    acked: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)  # HTTP status (or error name) -> requests
    refused_503: int = 0
    retry_after_seen: set[str] = field(default_factory=set)

    def by_day(self, source: str) -> dict[str, set[str]]:
        """Return the acknowledged ids of ``source`` per day."""
        days: dict[str, set[str]] = {}
        for event_id in self.acked:
            event = self.sent[event_id]
            if _source(event) == source:
                days.setdefault(event["event_time"][:10], set()).add(event_id)
        return days

    def traffic(self, day: str) -> Counter[str]:
        """Return the acknowledged impressions and clicks of ``day``."""
        counts: Counter[str] = Counter()
        for event_id in self.acked:
            event = self.sent[event_id]
            if _source(event) == "beacon" and event["event_time"].startswith(day):
                counts[event["type"]] += 1
        return counts


def _source(event: dict[str, Any]) -> str:
    return "meter_read" if event.get("type", "meter_read") == "meter_read" else "beacon"


class LoadGenerator:
    """Send beacons, event batches and meter-read batches at a steady pace from a thread until stopped."""

    def __init__(
        self,
        *,
        ingest_url: str,
        key: str,
        scenario: str,
        days: list[date],
        interval_s: float = 0.3,
        batch: int = 4,
        request_timeout_s: float = 10.0,
    ) -> None:
        self.ingest_url = ingest_url
        self.key = key
        self.scenario = scenario
        self.days = days
        self.interval_s = interval_s
        self.batch = batch
        self.request_timeout_s = request_timeout_s
        self.acks = Acks()
        self._rng = random.Random(scenario)
        self._seq = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.failures: list[str] = []

    # -- what is sent -----------------------------------------------------------------------------
    def _next_id(self, kind: str) -> str:
        with self._lock:
            self._seq += 1
            return f"chaos-{self.scenario}-{kind}-{self._seq}"

    def _event_time(self) -> str:
        day = self._rng.choice(self.days)
        # A few hours of each day: every hour is its own archive object per shipped segment, and the emulator's
        # object count is what a scenario's drain time would otherwise measure.
        hour = self._rng.choice(HOURS)
        at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(seconds=self._rng.randrange(3600))
        return at.isoformat().replace("+00:00", "Z")

    def _ad_event(self) -> dict[str, Any]:
        kind = "click" if self._rng.random() < 0.25 else "impression"
        return {
            "event_id": self._next_id(kind[:3]),
            "type": kind,
            "event_time": self._event_time(),
            "ad_id": self._rng.choice(ADS),
            "campaign_id": "chaos",
        }

    def _meter_read(self) -> dict[str, Any]:
        return {
            "event_id": self._next_id("read"),
            "type": "meter_read",
            "event_time": self._event_time(),
            "cloud_id": f"{self._rng.randrange(40):06d}",
            "demand_kw": round(self._rng.uniform(0.1, 7.5), 3),
            "summation_delivered_kwh": round(self._rng.uniform(1000, 2000), 3),
            "summation_received_kwh": 0.0,
            "raw": {"source": "chaos"},
        }

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> LoadGenerator:
        """Start the three senders."""
        for name, target in (("beacons", self._beacons), ("events", self._events), ("reads", self._reads)):
            thread = threading.Thread(target=target, name=f"chaos-load-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 120.0) -> Acks:
        """Stop sending new events, let every in-flight request be acknowledged, and return what was."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"load senders still retrying after {timeout_s}s: {stuck}"
        return self.acks

    def _pace(self, sender: Any) -> None:
        try:
            with httpx.Client(timeout=self.request_timeout_s) as http:
                while not self._stop.is_set():
                    started = time.monotonic()
                    sender(http)
                    self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
        except Exception as exc:  # reported by the scenario: a sender thread must not die silently
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def _beacons(self) -> None:
        self._pace(lambda http: self._deliver(http, "/v1/beacons/{type}", [self._ad_event()], single=True))

    def _events(self) -> None:
        self._pace(lambda http: self._deliver(http, "/v1/events", [self._ad_event() for _ in range(self.batch)]))

    def _reads(self) -> None:
        self._pace(lambda http: self._deliver(http, "/v1/meter-reads", [self._meter_read() for _ in range(self.batch)]))

    def _deliver(self, http: httpx.Client, path: str, events: list[dict[str, Any]], *, single: bool = False) -> None:
        """Post ``events`` until every one is acknowledged (the same ids each time), however long a fault lasts."""
        with self._lock:
            self.acks.sent.update((e["event_id"], e) for e in events)
        pending = events
        while pending:
            status, acked, retry_after = self._post(http, path, pending, single=single)
            with self._lock:
                self.acks.statuses[status] += 1
                self.acks.acked.update(acked)
                if status == "503":
                    self.acks.refused_503 += 1
                if retry_after is not None:
                    self.acks.retry_after_seen.add(retry_after)
            pending = [e for e in pending if e["event_id"] not in acked]
            if pending:
                time.sleep(min(float(retry_after or 0.5), 2.0))

    def _post(
        self, http: httpx.Client, path: str, events: list[dict[str, Any]], *, single: bool
    ) -> tuple[str, set[str], str | None]:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            if single:
                event = events[0]
                body = {k: v for k, v in event.items() if k != "type"}
                response = http.post(f"{self.ingest_url}{path.format(type=event['type'])}", json=body, headers=headers)
            else:
                key = "reads" if path.endswith("meter-reads") else "events"
                response = http.post(f"{self.ingest_url}{path}", json={key: events}, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__, set(), None
        retry_after = response.headers.get("retry-after")
        if response.status_code != 202:
            return str(response.status_code), set(), retry_after
        answer = response.json()
        if single:
            return "202", {answer["event_id"]} if answer["status"] in ACKED else set(), retry_after
        acked = {r["event_id"] for r in answer["results"] if r["status"] in ACKED}
        rejected = [r for r in answer["results"] if r["status"] == "rejected"]
        # A rejection other than "retry" would be a bug in this generator: fail loudly rather than retry forever.
        for result in rejected:
            assert "retry" in (result.get("reason") or ""), f"ingest rejected a valid event: {result}"
        return "202", acked, retry_after

    def deliver(self, path: str, events: list[dict[str, Any]]) -> None:
        """Send ``events`` outside the paced senders (e.g. late events after the load), recorded like the rest."""
        with httpx.Client(timeout=self.request_timeout_s) as http:
            self._deliver(http, path, events)
