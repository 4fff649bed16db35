"""``headwater pump list|show|create|preview|cancel``: replay jobs over the replay service's REST API.

The verbs of 0.1 (create-job, get-job, get-all-jobs, preview-job, cancel-job) stay as hidden aliases with
their old output, so existing scripts keep working.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from headwater import ui
from headwater.service_client import KeyOption, call, open_client, url_option

app = typer.Typer(help="Replay archived events onto a Kinesis stream (the pump).", no_args_is_help=True)
UrlOption = url_option("replay")
ENDED = ("succeeded", "failed", "cancelled")

QueryOption = Annotated[str, typer.Option("-q", "--query", help="a SELECT over raw_events / live_events / all_events")]
CompactOption = Annotated[str | None, typer.Option("--compact-key", help="keep only the last record per key")]
AnnotateOption = Annotated[str | None, typer.Option("--annotate", help="JSON object merged under _replay")]
FollowOption = Annotated[bool, typer.Option("-p", "--progress", help="follow until it ends, with a progress bar")]
TableOption = Annotated[bool, typer.Option("-t", "--table", help="show as a table")]


def _jobs_table(jobs: list[dict[str, Any]]) -> Any:
    rows = []
    for job in jobs:
        p = job["progress"]
        rows.append(
            (
                job["id"],
                job["state"],
                job["target_stream"],
                p["read"],
                p["emitted"],
                p["failed"],
                f"{p['percentage']:.1f}",
                f"{p['rate']:.1f}",
                job["created_at"][:19],
            )
        )
    return ui.table(("id", "state", "target", "read", "emitted", "failed", "%", "rate/s", "created"), rows)


def _show_table(job: dict[str, Any]) -> None:
    ui.show(_jobs_table([job]))
    if job.get("summary"):
        ui.out().print_json(data=job["summary"])
    if job.get("error"):
        ui.out().print(f"[red]{job['error']}[/red]")


def _print_job(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        ui.emit_json(job)
    else:
        _show_table(job)


def _annotation(annotate: str | None) -> dict[str, Any]:
    if not annotate:
        return {}
    try:
        value = json.loads(annotate)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--annotate") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--annotate")
    return value


def _follow(client: httpx.Client, job_id: str, interval: float = 0.5) -> dict[str, Any]:
    """Poll a replay job with a progress bar (records read of the total) until it ends."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=ui.err(), transient=False) as bar:
        task = bar.add_task(job_id, total=None, rate="")
        while True:
            job = call(client, "GET", f"/v1/replays/{job_id}")
            p = job["progress"]
            bar.update(
                task,
                total=p["total"],
                completed=p["read"],
                rate=f"{p['rate']:.0f}/s",
                description=f"{job_id} {job['state']}",
            )
            if job["state"] in ENDED:
                return job
            time.sleep(interval)


def _create(
    client: httpx.Client,
    query: str,
    stream: str | None,
    compact_key: str | None,
    annotate: str | None,
    rate: float | None,
    dry_run: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "target_stream": stream, "rate_limit": rate, "dry_run": dry_run}
    if compact_key:
        body.update(compact=True, key=compact_key)
    if annotate:
        body["annotate"] = _annotation(annotate)
    return call(client, "POST", "/v1/replays", json=body)


def _preview(client: httpx.Client, query: str, n: int, compact_key: str | None, annotate: str | None) -> list[Any]:
    body: dict[str, Any] = {"query": query, "limit": n, "annotate": _annotation(annotate)}
    if compact_key:
        body.update(compact=True, key=compact_key)
    return call(client, "POST", "/v1/replays/preview", json=body)["records"]


@app.command("list")
def list_jobs(url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False) -> None:
    """List every replay job, newest first."""
    with open_client("replay", url, api_key) as client:
        jobs = call(client, "GET", "/v1/replays")["jobs"]
    ui.emit(jobs, as_json, _jobs_table(jobs))


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="replay job id")],
    progress: FollowOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Show one replay job (with --progress, follow it until it ends)."""
    with open_client("replay", url, api_key) as client:
        job = _follow(client, job_id) if progress else call(client, "GET", f"/v1/replays/{job_id}")
    _print_job(job, as_json)


@app.command("create")
def create(
    query: QueryOption,
    stream: Annotated[str | None, typer.Option("-s", "--stream", help="target Kinesis stream")] = None,
    progress: FollowOption = False,
    compact_key: CompactOption = None,
    annotate: AnnotateOption = None,
    rate: Annotated[float | None, typer.Option("--rate", help="records per second")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count without emitting")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Create a replay job from a SQL query (with --progress, follow it; exit 1 unless it succeeds)."""
    with open_client("replay", url, api_key) as client:
        job = _create(client, query, stream, compact_key, annotate, rate, dry_run)
        if progress:
            job = _follow(client, job["id"])
    _print_job(job, as_json)
    if progress and job["state"] != "succeeded":
        raise typer.Exit(1)


@app.command("preview")
def preview(
    query: QueryOption,
    n: Annotated[int, typer.Option("-n", help="how many records")] = 10,
    compact_key: CompactOption = None,
    annotate: AnnotateOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Show the first N records a replay of QUERY would emit (--json: one JSON line each)."""
    with open_client("replay", url, api_key) as client:
        records = _preview(client, query, n, compact_key, annotate)
    if as_json:
        ui.emit_json_lines(records)
        return
    rows = [(r.get("partition_key"), json.dumps(r.get("data"), default=str)) for r in records]
    ui.show(ui.table(("partition key", "data"), rows))


@app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(help="replay job id")],
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Cancel a replay job."""
    with open_client("replay", url, api_key) as client:
        job = call(client, "POST", f"/v1/replays/{job_id}/cancel")
    ui.emit(job, as_json, f"{job['id']} {job['state']}")


# -- the 0.1 verbs, hidden: same options and output as before ------------------------------------------------
IdOption = Annotated[str, typer.Option("--id", help="replay job id")]


@app.command("create-job", hidden=True)
def create_job(
    query: QueryOption,
    stream: Annotated[str | None, typer.Option("-s", "--stream")] = None,
    progress: FollowOption = False,
    compact_key: CompactOption = None,
    annotate: AnnotateOption = None,
    rate: Annotated[float | None, typer.Option("--rate")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Old name of ``pump create``: print the new job's id (or follow it with -p)."""
    with open_client("replay", url, api_key) as client:
        job = _create(client, query, stream, compact_key, annotate, rate, dry_run)
        if not progress:
            typer.echo(job["id"])
            return
        job = _follow(client, job["id"])
    _show_table(job)
    if job["state"] != "succeeded":
        raise typer.Exit(1)


@app.command("preview-job", hidden=True)
def preview_job(
    query: QueryOption,
    n: Annotated[int, typer.Option("-n")] = 10,
    compact_key: CompactOption = None,
    annotate: AnnotateOption = None,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Old name of ``pump preview --json``."""
    with open_client("replay", url, api_key) as client:
        ui.emit_json_lines(_preview(client, query, n, compact_key, annotate))


@app.command("get-job", hidden=True)
def get_job(
    job_id: IdOption,
    progress: FollowOption = False,
    table: TableOption = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
) -> None:
    """Old name of ``pump show``: JSON unless -t."""
    with open_client("replay", url, api_key) as client:
        job = _follow(client, job_id) if progress else call(client, "GET", f"/v1/replays/{job_id}")
    _print_job(job, not table)


@app.command("get-all-jobs", hidden=True)
def get_all_jobs(table: TableOption = False, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Old name of ``pump list``: JSON unless -t."""
    with open_client("replay", url, api_key) as client:
        jobs = call(client, "GET", "/v1/replays")["jobs"]
    ui.emit(jobs, not table, _jobs_table(jobs))


@app.command("cancel-job", hidden=True)
def cancel_job(job_id: IdOption, url: UrlOption = None, api_key: KeyOption = None) -> None:
    """Old name of ``pump cancel``."""
    with open_client("replay", url, api_key) as client:
        job = call(client, "POST", f"/v1/replays/{job_id}/cancel")
    typer.echo(f"{job['id']} {job['state']}")


def register(root: typer.Typer) -> None:
    """Add the ``pump`` group to ``headwater``."""
    root.add_typer(app, name="pump")
