"""``headwater pump``: create, preview, follow and list replay jobs over the replay service's REST API."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from shared.cli.config import CliSettings, read_admin_key

pump = typer.Typer(help="Replay archived events onto a Kinesis stream (the pump).", no_args_is_help=True)
console = Console()
TERMINAL = ("succeeded", "failed", "cancelled")

UrlOpt = Annotated[str | None, typer.Option("--url", help="replay service URL [env HEADWATER_REPLAY_URL]")]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key [env HEADWATER_API_KEY, else .headwater/admin.key]")
]


def _client(url: str | None, api_key: str | None) -> httpx.Client:
    base = url or os.environ.get("HEADWATER_REPLAY_URL") or "http://127.0.0.1:8004"
    key = api_key or os.environ.get("HEADWATER_API_KEY") or read_admin_key(CliSettings())
    if not key:
        console.print("[red]no API key: pass --api-key, set HEADWATER_API_KEY or run `headwater up`[/red]")
        raise typer.Exit(2)
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {client.base_url}: {exc}[/red]")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError):
            message = response.text
        console.print(f"[red]{response.status_code} {message}[/red]")
        raise typer.Exit(1)
    return response.json()


def _jobs_table(jobs: list[dict]) -> Table:
    table = Table("id", "state", "target", "read", "emitted", "failed", "%", "rate/s", "created")
    for job in jobs:
        p = job["progress"]
        table.add_row(
            job["id"],
            job["state"],
            job["target_stream"],
            str(p["read"]),
            str(p["emitted"]),
            str(p["failed"]),
            f"{p['percentage']:.1f}",
            f"{p['rate']:.1f}",
            job["created_at"][:19],
        )
    return table


def _show(job: dict, as_table: bool) -> None:
    if as_table:
        console.print(_jobs_table([job]))
        if job.get("summary"):
            console.print_json(data=job["summary"])
        if job.get("error"):
            console.print(f"[red]{job['error']}[/red]")
    else:
        typer.echo(json.dumps(job, indent=2))


def _follow(client: httpx.Client, job_id: str, interval: float = 0.5) -> dict:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(job_id, total=None, rate="")
        while True:
            job = _call(client, "GET", f"/v1/replays/{job_id}")
            p = job["progress"]
            bar.update(
                task,
                total=p["total"],
                completed=p["read"],
                rate=f"{p['rate']:.0f}/s",
                description=f"{job_id} {job['state']}",
            )
            if job["state"] in TERMINAL:
                return job
            time.sleep(interval)


@pump.command("create-job")
def create_job(
    query: Annotated[str, typer.Option("-q", "--query", help="a SELECT over raw_events / live_events / all_events")],
    stream: Annotated[str | None, typer.Option("-s", "--stream", help="target Kinesis stream")] = None,
    progress: Annotated[bool, typer.Option("-p", "--progress", help="follow with a progress bar")] = False,
    compact_key: Annotated[str | None, typer.Option("--compact-key", help="keep only the last record per key")] = None,
    annotate: Annotated[str | None, typer.Option("--annotate", help="JSON object merged under _replay")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="records per second")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count without emitting")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Create a replay job from a SQL query."""
    body: dict[str, Any] = {"query": query, "target_stream": stream, "rate_limit": rate, "dry_run": dry_run}
    if compact_key:
        body.update(compact=True, key=compact_key)
    if annotate:
        try:
            body["annotate"] = json.loads(annotate)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--annotate") from None
        if not isinstance(body["annotate"], dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--annotate")
    with _client(url, api_key) as client:
        job = _call(client, "POST", "/v1/replays", json=body)
        if not progress:
            typer.echo(job["id"])
            return
        job = _follow(client, job["id"])
        _show(job, as_table=True)
        if job["state"] != "succeeded":
            raise typer.Exit(1)


@pump.command("preview-job")
def preview_job(
    query: Annotated[str, typer.Option("-q", "--query")],
    n: Annotated[int, typer.Option("-n", help="how many records")] = 10,
    compact_key: Annotated[str | None, typer.Option("--compact-key")] = None,
    annotate: Annotated[str | None, typer.Option("--annotate")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Print the first N records a replay of QUERY would emit, one JSON line each."""
    body: dict[str, Any] = {"query": query, "limit": n, "annotate": json.loads(annotate) if annotate else {}}
    if compact_key:
        body.update(compact=True, key=compact_key)
    with _client(url, api_key) as client:
        for record in _call(client, "POST", "/v1/replays/preview", json=body)["records"]:
            typer.echo(json.dumps(record))


@pump.command("get-job")
def get_job(
    job_id: Annotated[str, typer.Option("--id", help="replay job id")],
    progress: Annotated[bool, typer.Option("-p", "--progress", help="follow until it ends")] = False,
    table: Annotated[bool, typer.Option("-t", "--table", help="show as a table")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show one replay job."""
    with _client(url, api_key) as client:
        job = _follow(client, job_id) if progress else _call(client, "GET", f"/v1/replays/{job_id}")
    _show(job, table)


@pump.command("get-all-jobs")
def get_all_jobs(
    table: Annotated[bool, typer.Option("-t", "--table", help="show as a table")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List every replay job, newest first."""
    with _client(url, api_key) as client:
        jobs = _call(client, "GET", "/v1/replays")["jobs"]
    if table:
        console.print(_jobs_table(jobs))
    else:
        typer.echo(json.dumps(jobs, indent=2))


@pump.command("cancel-job")
def cancel_job(job_id: Annotated[str, typer.Option("--id")], url: UrlOpt = None, api_key: KeyOpt = None) -> None:
    """Cancel a replay job."""
    with _client(url, api_key) as client:
        job = _call(client, "POST", f"/v1/replays/{job_id}/cancel")
    typer.echo(f"{job['id']} {job['state']}")


def register(app: typer.Typer) -> None:
    """Add the ``pump`` command group to the headwater CLI."""
    app.add_typer(pump, name="pump")
