"""Poller commands: ``headwater devices list|import``, ``headwater simulate-devices``, ``headwater poller``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from headwater import ui
from headwater.service_client import KeyOption, call, open_client, url_option

app = typer.Typer(help="Manage the poller's device registry over its API.", no_args_is_help=True)
UrlOption = url_option("poller")


@app.command("import")
def import_devices(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines, one device per line")],
    upsert: Annotated[bool, typer.Option(help="update devices that already exist")] = False,
    batch: Annotated[int, typer.Option(help="devices per request")] = 1000,
    url: UrlOption = None,
    api_key: KeyOption = None,
    as_json: ui.JsonOption = False,
) -> None:
    """Register devices from a JSON-lines file (credentials travel in the body, never in a URL).

    Exits 2 when some devices were refused; each refused line is named on standard error.
    """
    lines = [line for line in file.read_bytes().splitlines() if line.strip()]
    totals = {"created": 0, "updated": 0, "failed": 0}
    with open_client("poller", url, api_key) as client, ui.progress("import", "devices") as bar:
        task = bar.add_task("import", total=len(lines), note="")
        for start in range(0, len(lines), batch):
            chunk = lines[start : start + batch]
            result = call(
                client,
                "POST",
                "/v1/devices",
                ok=(409, 422),  # a batch the API refuses as a whole: count it, name it, go on
                content=b"\n".join(chunk),
                params={"upsert": str(upsert).lower()},
                headers={"Content-Type": "application/x-ndjson"},
            )
            bar.advance(task, len(chunk))
            if "results" not in result:
                totals["failed"] += 1
                bar.console.print(f"line {start + 1}: {result['error']['message']}")
                continue
            for key in totals:
                totals[key] += result[key]
            bar.update(
                task, note=f"{totals['created']} created, {totals['updated']} updated, {totals['failed']} failed"
            )
            for item in result["results"]:
                if item["status"] in ("invalid", "exists"):
                    reasons = "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in item["errors"])
                    bar.console.print(f"line {start + item['index'] + 1}: {item['status']} ({reasons})")
    if as_json:
        ui.emit_json_lines([totals])  # one line, like ``devices list --json``
    else:
        ui.show(ui.table(tuple(totals), [tuple(totals.values())], title=f"devices from {file.name}"))
    if totals["failed"]:
        raise typer.Exit(2)


@app.command("list")
def list_devices(url: UrlOption = None, api_key: KeyOption = None, as_json: ui.JsonOption = False) -> None:
    """List every registered device (--json: one JSON line each; credentials are never shown)."""
    devices: list[dict[str, Any]] = []
    cursor: str | None = None
    with open_client("poller", url, api_key, timeout=30) as client:
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            page = call(client, "GET", "/v1/devices", params=params)
            devices += page["devices"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    if as_json:
        ui.emit_json_lines(devices)
        return
    columns = ("cloud_id", "owner_email", "state", "shard", "total_events_logged", "last_timestamp", "last_error")
    ui.show(ui.table(columns, [[d.get(c) for c in columns] for d in devices], title=f"{len(devices)} devices"))


def simulate_devices(
    count: Annotated[int, typer.Option(help="number of simulated Eagles")] = 1000,
    latency: Annotated[str, typer.Option(help="answer latency range, e.g. 20-80ms")] = "20-80ms",
    fail_rate: Annotated[float, typer.Option(help="share of devices that fail (auth, hang, 5xx, slow)")] = 0.0,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8090,
    seed: Annotated[int, typer.Option()] = 0,
    local_share: Annotated[
        float, typer.Option(help="share of the fleet on the LAN, half Eagle-100s, half Eagle-200s (at most 25 each)")
    ] = 0.1,
    local_port_base: Annotated[int, typer.Option(help="first port of the local devices; 0: free ports")] = 0,
    export: Annotated[Path | None, typer.Option(help="write registration JSON lines here first")] = None,
) -> None:
    """Serve simulated Rainforest Eagles: cloud devices on one port, each local gateway on a port of its own."""
    from services.poller.simulator import SimulatedFleet, parse_latency, simulator_server

    each_local = min(25, round(count * max(0.0, local_share) / 2))
    fleet = SimulatedFleet(
        count=count,
        latency=parse_latency(latency),
        fail_rate=fail_rate,
        seed=seed,
        eagle100_local=each_local,
        eagle200_local=each_local,
        local_port_base=local_port_base,
    )
    sockets = fleet.bind_sockets(host, port)  # local devices learn their ports before the records are written
    if export is not None:
        export.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in fleet.fixtures()))
        typer.echo(f"wrote {count} device records to {export}", err=True)
    modes: dict[str, int] = {}
    for device in fleet.devices.values():
        modes[device.mode] = modes.get(device.mode, 0) + 1
    protocols = f"{count - 2 * each_local} cloud, {each_local} eagle100-local, {each_local} eagle200-local"
    typer.echo(f"simulating {count} Eagles ({protocols}) on http://{host}:{port} ({modes})", err=True)
    _run(simulator_server(fleet, host=host, port=port).serve(sockets=sockets))


def poller(
    replica_id: Annotated[str | None, typer.Option(help="replica name (default host-pid)")] = None,
    rotate_every: Annotated[float, typer.Option(help="seconds between log rotations; 0 disables")] = 300.0,
) -> None:
    """Run one poller replica: take shard leases and poll its devices until SIGTERM."""
    from services.poller.settings import PollerSettings
    from services.poller.wiring import run_replica
    from shared.logging import configure_logging

    if replica_id:
        os.environ["HEADWATER_REPLICA_ID"] = replica_id
    settings = PollerSettings()
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    _run(run_replica(settings, rotate_every_s=rotate_every or None))


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (it ships with uvicorn[standard]), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        uvloop = None
    if uvloop is None or os.environ.get("HEADWATER_NO_UVLOOP"):
        asyncio.run(main)
    else:
        uvloop.run(main)


def register(root: typer.Typer) -> None:
    """Add the poller's commands to ``headwater``."""
    root.add_typer(app, name="devices")
    root.command("simulate-devices")(simulate_devices)
    root.command("poller")(poller)
