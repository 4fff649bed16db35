"""``headwater jobs list|show|create|runs|pause|resume|cancel|delete|retry`` over the loader API."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Annotated, Any

import httpx
import typer

from headwater import ui
from headwater.service_client import KeyOption, call, open_client, url_option

app = typer.Typer(help="Manage load jobs (watch S3, transform, load the warehouse).", no_args_is_help=True)
UrlOption = url_option("loader")
JobId = Annotated[int, typer.Argument(help="job id")]
# A run in one of these states will not move again on its own.
ENDED = frozenset({"loaded", "failed", "cancelled", "expired"})


def _counts(runs: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(runs.items())) or "no dates yet"


def _jobs_table(jobs: list[dict[str, Any]]) -> Any:
    rows = [
        (j["id"], j["state"], j["name"], j["source"], f"{j['warehouse']}:{j['table']}", _counts(j["runs"]))
        for j in jobs
    ]
    return ui.table(("id", "state", "name", "source", "warehouse:table", "dates"), rows)


@app.command("list")
def list_jobs(url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False) -> None:
    """List jobs with their state and per-state date counts."""
    with open_client("loader", url, api_key) as client:
        jobs = call(client, "GET", "/v1/jobs")
    ui.emit(jobs, as_json, _jobs_table(jobs))


@app.command("show")
def show(job_id: JobId, url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False) -> None:
    """Show one job."""
    with open_client("loader", url, api_key) as client:
        job = call(client, "GET", f"/v1/jobs/{job_id}")
    ui.emit(job, as_json, ui.fields_table(job, title=f"job {job_id}"))


def backfill_dates(job: dict[str, Any], today: date | None = None) -> int:
    """Return how many dates of the job's range lie in the past or today (what a backfill can load now)."""
    last = min(date.fromisoformat(job["end_date"]) if job.get("end_date") else date.max, today or _today())
    return max(0, (last - date.fromisoformat(job["start_date"])).days + 1)


def _today() -> date:
    return datetime.now(UTC).date()


def follow_backfill(client: httpx.Client, job: dict[str, Any], *, idle_s: float, interval: float = 0.5) -> list[Any]:
    """Show dates found and ended until every date of the range ended, or nothing moved for ``idle_s``.

    The worker discovers a date only once its day is complete in S3, so the bar counts ended dates against
    the range's past dates; dates still missing in S3 are reported, not waited for forever.
    """
    total = backfill_dates(job)
    last_change, seen = time.monotonic(), None
    with ui.progress(f"job {job['id']}", "dates ended") as bar:
        task = bar.add_task("backfill", total=total or None, note="")
        while True:
            runs = call(client, "GET", f"/v1/jobs/{job['id']}/runs")
            ended = sum(1 for run in runs if run["state"] in ENDED)
            loaded = sum(1 for run in runs if run["state"] == "loaded")
            bar.update(task, completed=ended, note=f"{len(runs)} found, {loaded} loaded")
            state = (len(runs), ended)
            if state != seen:
                seen, last_change = state, time.monotonic()
            if ended >= total or (ended == len(runs) and time.monotonic() - last_change >= idle_s):
                return runs
            time.sleep(interval)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="job name")],
    schema: Annotated[str, typer.Option(help="schema name")],
    version: Annotated[int, typer.Option(help="schema version")],
    source: Annotated[str, typer.Option(help="s3://bucket/prefix/YYYY/MM/DD/ or .../dt=YYYY-MM-DD/")],
    start: Annotated[str, typer.Option(help="first date, YYYY-MM-DD")],
    end: Annotated[str | None, typer.Option(help="last date, YYYY-MM-DD")] = None,
    warehouse: Annotated[str, typer.Option(help="duckdb | postgres | redshift")] = "duckdb",
    engine: Annotated[str, typer.Option(help="transform engine: local | emr | glue")] = "local",
    table: Annotated[str | None, typer.Option(help="warehouse table (default: the schema name)")] = None,
    email: Annotated[list[str] | None, typer.Option(help="notify this address (repeatable)")] = None,
    retention_days: Annotated[int | None, typer.Option(help="delete dates older than this")] = None,
    progress: Annotated[
        bool, typer.Option("-p", "--progress", help="follow the backfill: dates found and loaded, with a bar")
    ] = False,
    idle: Annotated[float, typer.Option(help="with --progress: stop following after this many idle seconds")] = 30.0,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Create a job; with --progress follow its backfill until its dates are loaded."""
    body = {
        "name": name,
        "schema_name": schema,
        "schema_version": version,
        "source": source,
        "start_date": start,
        "end_date": end,
        "warehouse": warehouse,
        "engine": engine,
        "table": table,
        "emails": email or [],
        "retention_days": retention_days,
    }
    with open_client("loader", url, api_key) as client:
        job = call(client, "POST", "/v1/jobs", json=body)
        if progress:
            runs = follow_backfill(client, job, idle_s=idle)
            job = call(client, "GET", f"/v1/jobs/{job['id']}")
            missing = backfill_dates(job) - len(runs)
            if missing > 0:
                ui.err().print(f"{missing} dates have no complete day in S3 yet; the loader loads them when they land")
    ui.emit(job, as_json, ui.fields_table(job, title=f"job {job['id']} created"))


@app.command("runs")
def runs(job_id: JobId, url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False) -> None:
    """Show each date's state, attempts and row counts."""
    with open_client("loader", url, api_key) as client:
        items = call(client, "GET", f"/v1/jobs/{job_id}/runs")
    if as_json:
        ui.emit_json(items)
        return
    rows = [(r["dt"], r["state"], r["attempts"], r["rows_loaded"], r["error"]) for r in items]
    ui.show(ui.table(("date", "state", "attempts", "rows loaded", "error"), rows, title=f"job {job_id}"))


def _action(action: str) -> Any:
    def _command(
        job_id: JobId, url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False
    ) -> None:
        with open_client("loader", url, api_key) as client:
            job = call(client, "POST", f"/v1/jobs/{job_id}/{action}")["job"]
        ui.emit(job, as_json, f"job {job['id']} is {job['state']}")

    _command.__doc__ = f"{action.capitalize()} a job."
    return _command


@app.command("delete")
def delete(
    job_id: JobId,
    drop_data: Annotated[bool, typer.Option(help="also delete its loaded dates from the warehouse")] = False,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Delete a job (and optionally its loaded data)."""
    with open_client("loader", url, api_key) as client:
        result = call(client, "DELETE", f"/v1/jobs/{job_id}", params={"drop_data": str(drop_data).lower()})
    ui.emit(result, as_json, f"job {job_id} deleted; {result['dates_dropped']} dates dropped")


@app.command("retry")
def retry(
    job_id: JobId,
    dt: Annotated[str, typer.Argument(help="the failed date, YYYY-MM-DD")],
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Retry a failed date."""
    with open_client("loader", url, api_key) as client:
        run = call(client, "POST", f"/v1/jobs/{job_id}/runs/{dt}/retry")
    ui.emit(run, as_json, f"{run['dt']} is {run['state']}")


for _name in ("pause", "resume", "cancel"):
    app.command(_name)(_action(_name))


def register(root: typer.Typer) -> None:
    """Add the ``jobs`` group to ``headwater``."""
    root.add_typer(app, name="jobs")
