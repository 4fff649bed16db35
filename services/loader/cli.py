"""Loader commands: ``headwater jobs list|show|create|runs|pause|resume|cancel|delete|retry`` over the loader API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from shared.settings import SERVICE_PORTS

DEFAULT_URL = f"http://127.0.0.1:{SERVICE_PORTS['loader']}"

jobs_app = typer.Typer(help="Manage load jobs (watch S3, transform, load the warehouse).", no_args_is_help=True)

UrlOption = Annotated[str, typer.Option("--url", help="loader base URL", envvar="HEADWATER_LOADER_URL")]
KeyOption = Annotated[str, typer.Option("--api-key", help="API key (Bearer)", envvar="HEADWATER_API_KEY")]


def _call(method: str, url: str, api_key: str, path: str, **kwargs: Any) -> Any:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as client:
        response = client.request(method, path, **kwargs)
    body = response.json() if response.content else {}
    if response.status_code >= 400:
        error = body.get("error", {})
        details = "; ".join(f"{d.get('field')}: {d.get('reason')}" for d in error.get("details", []))
        typer.echo(
            f"error: HTTP {response.status_code}: {error.get('message', response.text)} {details}".rstrip(), err=True
        )
        raise typer.Exit(1)
    return body


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@jobs_app.command("list")
def list_jobs(url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
    """List jobs with their state and per-state date counts."""
    for job in _call("GET", url, api_key, "/v1/jobs"):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(job["runs"].items())) or "no dates yet"
        typer.echo(
            f"{job['id']:>4}  {job['state']:<9} {job['name']}  {job['source']} -> "
            f"{job['warehouse']}:{job['table']}  ({counts})"
        )


@jobs_app.command("show")
def show(job_id: int, url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
    """Show one job."""
    _print(_call("GET", url, api_key, f"/v1/jobs/{job_id}"))


@jobs_app.command("create")
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
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = "",
) -> None:
    """Create a job."""
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
    _print(_call("POST", url, api_key, "/v1/jobs", json=body))


@jobs_app.command("runs")
def runs(job_id: int, url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
    """Show each date's state, attempts and row counts."""
    for run in _call("GET", url, api_key, f"/v1/jobs/{job_id}/runs"):
        rows = "" if run["rows_loaded"] is None else f"{run['rows_loaded']} rows"
        error = f"  {run['error']}" if run["error"] else ""
        typer.echo(f"{run['dt']}  {run['state']:<12} attempts={run['attempts']}  {rows}{error}")


def _action(action: str) -> Any:
    def _command(job_id: int, url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
        job = _call("POST", url, api_key, f"/v1/jobs/{job_id}/{action}")["job"]
        typer.echo(f"job {job['id']} is {job['state']}")

    _command.__doc__ = f"{action.capitalize()} a job."
    return _command


@jobs_app.command("delete")
def delete(
    job_id: int,
    drop_data: Annotated[bool, typer.Option(help="also delete its loaded dates from the warehouse")] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = "",
) -> None:
    """Delete a job (and optionally its loaded data)."""
    result = _call("DELETE", url, api_key, f"/v1/jobs/{job_id}", params={"drop_data": str(drop_data).lower()})
    typer.echo(f"job {job_id} deleted; {result['dates_dropped']} dates dropped")


@jobs_app.command("retry")
def retry(job_id: int, dt: str, url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
    """Retry a failed date."""
    run = _call("POST", url, api_key, f"/v1/jobs/{job_id}/runs/{dt}/retry")
    typer.echo(f"{run['dt']} is {run['state']}")


for _name in ("pause", "resume", "cancel"):
    jobs_app.command(_name)(_action(_name))


def register(app: typer.Typer) -> None:
    """Add the ``jobs`` commands to the headwater CLI."""
    app.add_typer(jobs_app, name="jobs")
