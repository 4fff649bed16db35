"""``headwater loadgen``: drive ingest with impressions and clicks and report rate, errors and latency."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.ingest.loadgen import LoadPlan, plan_events, run_load
from shared.settings import HeadwaterSettings


def loadgen(
    rate: Annotated[float, typer.Option(help="impressions per second")] = 50.0,
    duration: Annotated[float, typer.Option(help="seconds to run")] = 10.0,
    ctr: Annotated[float, typer.Option(help="probability that an impression is followed by a click")] = 0.30,
    ads: Annotated[int, typer.Option(help="number of distinct ads")] = 10,
    batch: Annotated[int, typer.Option(help="events per POST /v1/events (0 sends GET beacons)")] = 0,
    url: Annotated[str | None, typer.Option(help="ingest base URL (default: HEADWATER_INGEST_URL)")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="HEADWATER_API_KEY", help="ingest:write key, needed with --batch")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="requests in flight at most")] = 64,
    seed: Annotated[int | None, typer.Option(help="random seed for a repeatable run")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    day: Annotated[
        list[datetime] | None,
        typer.Option(formats=["%Y-%m-%d"], help="spread client timestamps over this UTC day (repeatable)"),
    ] = None,
    id_prefix: Annotated[str, typer.Option(help="prefix of every event id (to find a run's events later)")] = "",
    record: Annotated[Path | None, typer.Option(help="write every event sent, as JSON lines, to this file")] = None,
) -> None:
    """Send impressions and clicks to ingest at a set rate; print achieved rate, errors and latency percentiles."""
    if batch and not api_key:
        typer.echo("--batch needs an API key with ingest:write (--api-key or HEADWATER_API_KEY)", err=True)
        raise typer.Exit(2)
    if not 0.0 <= ctr <= 1.0:
        typer.echo("--ctr must be between 0 and 1", err=True)
        raise typer.Exit(2)
    base_url = url or os.environ.get("HEADWATER_INGEST_URL") or HeadwaterSettings().ingest_url
    plan = LoadPlan(
        url=base_url,
        rate=rate,
        duration_s=duration,
        ctr=ctr,
        ads=ads,
        batch=batch,
        api_key=api_key,
        concurrency=concurrency,
        seed=seed,
        days=[d.date() for d in day or []],
        id_prefix=id_prefix,
    )
    events = plan_events(plan)
    if record is not None:
        record.write_text("".join(json.dumps(event) + "\n" for event in events))
    impressions = sum(1 for event in events if event["type"] == "impression")
    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]loadgen"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("impressions"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("send", total=impressions)
        report = asyncio.run(run_load(plan, events=events, progress=lambda n: progress.advance(task, n)))
    summary = report.summary()
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        table = Table(title=f"loadgen against {base_url}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for name, value in summary.items():
            table.add_row(name, str(value))
        Console().print(table)
    if report.errors:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ingest's commands to the ``headwater`` CLI."""
    root.command(name="loadgen")(loadgen)
