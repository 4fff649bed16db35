"""The scoreboard: after a fault, every hop must hold exactly what ingest acknowledged.

Per day and source it compares the ids ingest acknowledged (recorded by the load generator) with the distinct ids
in the S3 raw archive, the rows of the curated Parquet, the rows of the warehouse, the traffic API's counts and the
``_COMPLETE`` marker's count, and checks that the Kinesis stream holds every acknowledged id. A row is exact when
nothing is missing anywhere (``lost``) and nothing is there twice (``duplicated``).

Results are one JSON file per scenario in ``RESULTS_DIR`` (so scenarios written by other modules, or measured in
another run, sit beside each other), and ``docs/reliability.md`` is regenerated from every file present, in the
order of ``SCENARIOS``. A new scenario: add it to ``SCENARIOS``, build its rows with ``score_row`` (or by hand for a
unit-level scenario), and call ``ScenarioResult.save`` then ``write_reliability_md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RELIABILITY_MD = ROOT / "docs" / "reliability.md"


@dataclass(frozen=True)
class Scenario:
    """A fault the mesh is held to, as the reliability table names it."""

    key: str
    number: int
    title: str
    fault: str


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario("kill-9", 1, "kill -9 every process", "each API process and arq worker killed with SIGKILL in turn"),
        Scenario("redis-restart", 2, "Redis restarted", "Redis shut down (data saved) and started again"),
        Scenario(
            "redis-flush",
            2,
            "Redis flushed",
            "FLUSHALL during the load, and again once all was archived but no day marker written yet",
        ),
        Scenario("aws-down", 3, "AWS unreachable 30 s", "every connection to the AWS endpoint refused or cut"),
        Scenario("db-locked", 4, "metadata DB locked 20 s", "an exclusive SQLite write transaction held"),
        Scenario("poison-message", 5, "poison SQS messages", "a message no consumer can handle, on each queue"),
        Scenario("sqs-redelivery", 6, "SQS duplicates, out of order", "the same messages delivered twice, reordered"),
        Scenario("spool-disk-full", 7, "ingest spool disk full", "the spool's tmpfs filled up, then freed"),
        Scenario("clock-skew", 8, "clock skew", "events from the future and very late events for a loaded day"),
        Scenario("slow-aws", 9, "slow AWS", "every AWS call delayed 2 s by a proxy"),
    )
}


@dataclass
class Observed:
    """What one hop holds for one (day, source): ids where they can be read, else only a count."""

    ids: list[str] | None = None  # every id, repeats included
    count: int | None = None  # for hops that only count (traffic API, marker)

    @property
    def total(self) -> int:
        """Return how many records the hop holds."""
        return len(self.ids) if self.ids is not None else int(self.count or 0)


# The hops a row is made of, in pipeline order. Kinesis is checked for containment only (it keeps history).
HOPS = ("archive", "marker", "curated", "warehouse", "traffic")


def score_row(day: str, source: str, acked: set[str], hops: dict[str, Observed], kinesis: set[str] | None) -> dict:
    """Return one scoreboard row: per hop its count, and the row's lost, duplicated and verdict."""
    row: dict[str, Any] = {"day": day, "source": source, "acknowledged": len(acked)}
    lost = duplicated = unexpected = 0
    for hop in HOPS:
        seen = hops.get(hop)
        if seen is None:
            row[hop] = None  # not applicable (e.g. no traffic API for meter reads)
            continue
        row[hop] = seen.total
        if seen.ids is not None:
            distinct = set(seen.ids)
            lost = max(lost, len(acked - distinct))
            duplicated = max(duplicated, len(seen.ids) - len(distinct))
            unexpected = max(unexpected, len(distinct - acked))
        else:
            lost = max(lost, len(acked) - seen.total)
            duplicated = max(duplicated, seen.total - len(acked))
    if kinesis is not None:
        row["kinesis_missing"] = len(acked - kinesis)
        lost = max(lost, row["kinesis_missing"])
    row |= {"lost": max(lost, 0), "duplicated": max(duplicated, 0), "unexpected": unexpected}
    row["exact"] = row["lost"] == 0 and row["duplicated"] == 0 and unexpected == 0
    row["exact"] = row["exact"] and all(row[h] is None or row[h] == len(acked) for h in HOPS)
    return row


@dataclass
class ScenarioResult:
    """A scenario's totals and rows, as saved to ``RESULTS_DIR/<key>.json``."""

    key: str
    sent: int
    acknowledged: int
    lost: int
    duplicated: int
    drain_s: float | None  # fault over -> every hop exact (None when it never got there)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    poller_fresh: bool = True  # every simulated meter read again after the fault (scenarios without a mesh: True)
    measured_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def exact(self) -> bool:
        """Return whether the scenario lost and duplicated nothing and every row is exact."""
        exact_rows = all(r.get("exact", True) for r in self.rows)
        return self.lost == 0 and self.duplicated == 0 and exact_rows

    @classmethod
    def from_rows(
        cls, key: str, sent: int, rows: list[dict[str, Any]], drain_s: float | None, **kw: Any
    ) -> ScenarioResult:
        """Total the rows of a scenario."""
        return cls(
            key=key,
            sent=sent,
            acknowledged=sum(r["acknowledged"] for r in rows),
            lost=sum(r["lost"] for r in rows),
            duplicated=sum(r["duplicated"] for r in rows),
            drain_s=None if drain_s is None else round(drain_s, 1),
            rows=rows,
            **kw,
        )

    def save(self, results_dir: Path = RESULTS_DIR) -> Path:
        """Write this result as JSON (replacing the scenario's previous one); return the path."""
        results_dir.mkdir(parents=True, exist_ok=True)
        path = results_dir / f"{self.key}.json"
        path.write_text(json.dumps({**asdict(self), "exact": self.exact}, indent=1) + "\n")
        return path


def load_results(results_dir: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Return every saved result of a known scenario, in the order of ``SCENARIOS``."""
    order = list(SCENARIOS)
    found = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    return sorted((r for r in found if r["key"] in SCENARIOS), key=lambda r: order.index(r["key"]))


def render_rows(rows: list[dict[str, Any]]) -> str:
    """Return a scenario's rows as a plain-text table (printed by the test, for the log)."""
    columns = ["day", "source", "acknowledged", *HOPS, "kinesis_missing", "lost", "duplicated", "exact"]
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def reliability_markdown(results: list[dict[str, Any]]) -> str:
    """Return docs/reliability.md for ``results``."""
    lines = [
        "# Reliability: the mesh under faults",
        "",
        "Generated by the chaos tests (`tests/chaos/`, marker `chaos`, part of `./run test`); do not edit by hand.",
        "Each scenario runs the whole mesh (`headwater up`) with load flowing: ad events (beacons and batches) and",
        "meter reads through ingest over the scenario's own past days, the simulated fleet polled by the poller, and",
        "load jobs for those days. After the fault the scoreboard compares, per day and source, the events ingest",
        "acknowledged with the distinct ids in the S3 raw archive, the `_COMPLETE` marker's count, the rows of the",
        "curated Parquet, the warehouse rows and the traffic API's counts, and checks the Kinesis stream holds every",
        "acknowledged event. *Drain* is the time from the end of the fault until every hop was exact; *meters polled",
        "after* says whether every simulated meter was read again after the fault.",
        "",
        "| # | scenario | fault | sent | acknowledged | lost | duplicated | drain (s) | exact | meters polled after "
        "| measured |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in results:
        s = SCENARIOS[r["key"]]
        drain = "-" if r.get("drain_s") is None else f"{r['drain_s']:.1f}"
        verdict = "yes" if r.get("exact") else "**no**"
        lines.append(
            f"| {s.number} | {s.title} | {s.fault} | {r['sent']} | {r['acknowledged']} | {r['lost']} | "
            f"{r['duplicated']} | {drain} | {verdict} | {'yes' if r.get('poller_fresh', True) else '**no**'} | "
            f"{r['measured_at'][:10]} |"
        )
    notes = [(SCENARIOS[r["key"]], note) for r in results for note in r.get("notes", [])]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{s.title}**: {note}" for s, note in notes]
    missing = [s for k, s in SCENARIOS.items() if k not in {r["key"] for r in results}]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(f"{s.number} ({s.title})" for s in missing) + "."]
    return "\n".join(lines) + "\n"


def write_reliability_md(results_dir: Path = RESULTS_DIR, out: Path = RELIABILITY_MD) -> Path:
    """Regenerate docs/reliability.md from every saved result; return its path."""
    out.write_text(reliability_markdown(load_results(results_dir)))
    return out
