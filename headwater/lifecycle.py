"""Mesh lifecycle commands: up, bootstrap, migrate, status, demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from headwater import ui
from headwater.config import SERVICES, CliSettings
from headwater.mesh import Mesh, adopt_running_mesh_environment
from headwater.setup_steps import ensure_admin_key, ensure_poller_ingest_key, migrate, provision_keys
from shared.bootstrap import BOOTSTRAP_STEPS
from shared.bootstrap import bootstrap as bootstrap_resources

# Wide enough for the URL table even when stderr is not a terminal (rich would assume 80 columns).
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def start_mesh(settings: CliSettings, *, with_console: bool = True) -> tuple[Mesh, CliSettings, float]:
    """Start the emulator, Redis and every service; return the mesh, effective settings and seconds taken."""
    started = time.monotonic()
    mesh = Mesh(settings)
    try:
        with console.status("starting the emulator and Redis"):
            mesh.prepare_environment()
        effective = CliSettings()  # re-read: prepare_environment exported the mesh's environment
        run_bootstrap(effective)
        with console.status("creating the local API keys"):
            key_path, created = asyncio.run(ensure_admin_key(effective))
            # The poller posts meter reads to ingest with its own ingest:write key, handed over in its environment.
            poller_key = asyncio.run(ensure_poller_ingest_key(effective))
            mesh.secret_env.setdefault("poller", {})["HEADWATER_INGEST_API_KEY"] = poller_key
        if created:
            console.print(f"[green]created a local admin API key[/] in [bold]{key_path}[/] (mode 0600)")
        else:
            console.print(f"local admin API key: [bold]{key_path}[/]")
        mesh.start_device_simulator()
        if with_console:
            mesh.console_url = mesh.start_console()
        mesh.start_services()
        waited_for = mesh.waited_for()
        with ui.progress("starting", "services and workers ready") as bar:
            task = bar.add_task("ready", total=len(waited_for), note="")
            mesh.wait_ready(
                effective.startup_timeout_s, on_ready=lambda name: bar.update(task, advance=1, note=f"{name} ready")
            )
    except RuntimeError as exc:  # a child died or timed out: say which and where its log is, without a traceback
        mesh.stop()
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    except BaseException:
        mesh.stop()
        raise
    return mesh, effective, time.monotonic() - started


def service_table(settings: CliSettings, mesh: Mesh | None = None) -> Table:
    """Render the URLs of every service."""
    table = Table(title="Headwater mesh")
    for column in ("service", "API", "Swagger", "ready"):
        table.add_column(column)
    for row in collect_status(settings):
        url = row["url"]
        table.add_row(row["name"], url, f"{url}/docs", "yes" if row["ready"] else "[red]no[/]")
    if mesh:
        endpoint = mesh.env.get("AWS_ENDPOINT_URL", "")
        table.add_row("aws emulator", endpoint, f"{endpoint}/moto-api/", "yes")
        table.add_row("redis", mesh.env.get("HEADWATER_REDIS_URL", ""), "", "yes")
    return table


def collect_status(settings: CliSettings) -> list[dict[str, Any]]:
    """Return each service's name, base URL and readiness."""
    rows = []
    with httpx.Client(timeout=2.0) as client:
        for service in SERVICES:
            url = settings.service_url(service)
            try:
                response = client.get(f"{url}/readyz")
                ready, checks = response.status_code == 200, response.json().get("checks", {})
            except (httpx.HTTPError, ValueError):
                ready, checks = False, {}
            rows.append({"name": service, "url": url, "ready": ready, "checks": checks})
    return rows


class StopRequest:
    """Set by a signal handler, read by the supervisor loop.

    A plain attribute on purpose: a handler runs on the main thread between bytecodes, so taking a lock there
    (threading.Event.set) deadlocks when the main thread already holds it inside Event.wait.
    """

    def __init__(self) -> None:
        self.requested = False

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop request; return whether one came."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requested


def _install_stop_signals(stop: StopRequest) -> None:
    def _handler(_signum: int, _frame: object) -> None:
        stop.requested = True

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGHUP, _handler)


class RestartBudget:
    """At most ``limit`` restarts of one child within ``window_s`` seconds (beyond that it is a crash loop)."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._restarts: dict[str, list[float]] = {}

    def allow(self, name: str) -> bool:
        """Record a restart of ``name`` and return whether it is within the budget."""
        now = self.clock()
        recent = [t for t in self._restarts.get(name, []) if now - t < self.window_s]
        if len(recent) >= self.limit:
            return False
        self._restarts[name] = [*recent, now]
        return True


def up(
    console_port: Annotated[
        int | None, typer.Option(help="port of the console (default 8000, or HEADWATER_CONSOLE_PORT)")
    ] = None,
) -> None:
    """Start the whole mesh on embedded defaults; stop everything on Ctrl-C or SIGTERM."""
    if console_port is not None:
        os.environ["HEADWATER_CONSOLE_PORT"] = str(console_port)  # settings are re-read once the mesh is prepared
    settings = CliSettings()
    stop = StopRequest()
    _install_stop_signals(stop)
    mesh, effective, took = start_mesh(settings)
    # The one address people need comes first: every page and every API (under /api/<service>/) on one origin.
    console.print(f"[bold green]console: {mesh.console_url}/[/]  (sign in with the key in {effective.admin_key_file})")
    console.print(service_table(effective, mesh))
    console.print(
        f"[green]all five services ready in {took:.1f}s[/]; logs in {mesh.logs_dir}. Ctrl-C stops everything."
    )
    restarts = RestartBudget()
    try:
        while not stop.wait(0.5):
            dead = mesh.first_dead()
            if dead is None:
                continue
            console.print(f"[red]{dead.name} exited ({dead.process.returncode}); see {dead.log_path}[/]")
            # A crashed service or worker comes back (its state is in Redis, S3 and the database); the emulator,
            # Redis and the device simulator hold state in memory, and a crash loop needs a person: both stop `up`.
            if dead.kind == "infra" or not restarts.allow(dead.name):
                raise typer.Exit(1)
            mesh.respawn(dead)
            console.print(f"restarted {dead.name}")
    finally:
        with console.status("stopping"):
            mesh.stop()
        console.print("stopped; no process left behind")


def run_bootstrap(settings: CliSettings) -> None:
    """Create every AWS resource and database table, with a progress bar of the steps."""
    with ui.progress("bootstrap", "steps") as bar:
        task = bar.add_task("bootstrap", total=len(BOOTSTRAP_STEPS) + 1, note="")

        def _done(step: str) -> None:
            bar.update(task, advance=1, note=step)

        asyncio.run(bootstrap_resources(settings, on_step=_done))
        asyncio.run(migrate(settings))
        _done("database tables")
        # A deployment's Secret may hand over the poller's ingest key and the first admin key's hash.
        asyncio.run(provision_keys(settings))


def bootstrap() -> None:
    """Create every bucket, queue, stream, table and database table (idempotent)."""
    run_bootstrap(CliSettings())
    console.print("[green]bootstrap complete[/]")


def migrate_command() -> None:
    """Create or upgrade the metadata database tables (run before the services start)."""
    asyncio.run(migrate(CliSettings()))
    console.print("[green]metadata tables are up to date[/]")


def status(as_json: ui.JsonOption = False) -> None:
    """Show each service's base URL and readiness."""
    settings = CliSettings()
    rows = collect_status(settings)
    if as_json:
        sys.stdout.write(json.dumps([{k: r[k] for k in ("name", "url", "ready")} for r in rows]) + "\n")
    else:
        ui.show(service_table(settings))
    if not all(r["ready"] for r in rows):
        raise typer.Exit(1)


def demo(
    events: Annotated[int, typer.Option(help="impressions for the load generator to send (clicks come on top)")] = 3000,
    meter_reads: Annotated[int, typer.Option(help="meter reads to send")] = 500,
    timeout: Annotated[float, typer.Option(help="seconds each step may take")] = 120.0,
) -> None:
    """Send real events through the mesh (starting one if none runs) and show each hop land."""
    from headwater.demo import run_demo

    settings = CliSettings()
    if adopt_running_mesh_environment(settings):
        settings = CliSettings()
    mesh = None
    if not all(row["ready"] for row in collect_status(settings)):
        console.print("no running mesh answers; starting one for the demo")
        mesh, settings, took = start_mesh(settings)
        console.print(f"mesh ready in {took:.1f}s")
    try:
        ok = asyncio.run(run_demo(settings, events=events, meter_reads=meter_reads, step_timeout=timeout)).ok
    finally:
        if mesh is not None:
            with console.status("stopping the mesh"):
                mesh.stop()
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the lifecycle commands to the CLI."""
    app.command()(up)
    app.command()(bootstrap)
    app.command("migrate")(migrate_command)
    app.command()(status)
    app.command()(demo)
