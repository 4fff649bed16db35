"""Poller commands: ``headwater poller``, ``headwater simulate-devices``, ``headwater devices import|list``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from shared.settings import SERVICE_PORTS

DEFAULT_URL = f"http://127.0.0.1:{SERVICE_PORTS['poller']}"

devices_app = typer.Typer(help="Manage the poller's device registry over its API.", no_args_is_help=True)

UrlOption = Annotated[str, typer.Option("--url", help="poller base URL", envvar="HEADWATER_POLLER_URL")]
KeyOption = Annotated[str, typer.Option("--api-key", help="API key (Bearer)", envvar="HEADWATER_API_KEY")]


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


@devices_app.command("import")
def import_devices(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines, one device per line")],
    url: UrlOption = DEFAULT_URL,
    api_key: KeyOption = "",
    upsert: Annotated[bool, typer.Option(help="update devices that already exist")] = False,
    batch: Annotated[int, typer.Option(help="devices per request")] = 1000,
) -> None:
    """Register devices from a JSON-lines file (credentials travel in the body, never in a URL)."""
    lines = [line for line in file.read_bytes().splitlines() if line.strip()]
    totals = {"created": 0, "updated": 0, "failed": 0}
    with httpx.Client(base_url=url, headers=_headers(api_key), timeout=60) as client:
        for start in range(0, len(lines), batch):
            body = b"\n".join(lines[start : start + batch])
            response = client.post(
                "/v1/devices",
                content=body,
                params={"upsert": str(upsert).lower()},
                headers={"Content-Type": "application/x-ndjson"},
            )
            if response.status_code >= 400 and response.status_code not in (409, 422):
                typer.echo(f"error: HTTP {response.status_code}: {response.text}", err=True)
                raise typer.Exit(1)
            result = response.json()
            if "results" not in result:
                totals["failed"] += 1
                typer.echo(f"line {start + 1}: {result['error']['message']}", err=True)
                continue
            for key in totals:
                totals[key] += result[key]
            for item in result["results"]:
                if item["status"] in ("invalid", "exists"):
                    reasons = "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in item["errors"])
                    typer.echo(f"line {start + item['index'] + 1}: {item['status']} ({reasons})", err=True)
    typer.echo(orjson.dumps(totals).decode())
    if totals["failed"]:
        raise typer.Exit(2)


@devices_app.command("list")
def list_devices(url: UrlOption = DEFAULT_URL, api_key: KeyOption = "") -> None:
    """Print every registered device as JSON lines."""
    cursor: str | None = None
    with httpx.Client(base_url=url, headers=_headers(api_key), timeout=30) as client:
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            response = client.get("/v1/devices", params=params)
            response.raise_for_status()
            page = response.json()
            for device in page["devices"]:
                typer.echo(orjson.dumps(device).decode())
            cursor = page["next_cursor"]
            if not cursor:
                break


def simulate_devices(
    count: Annotated[int, typer.Option(help="number of simulated Eagles")] = 1000,
    latency: Annotated[str, typer.Option(help="answer latency range, e.g. 20-80ms")] = "20-80ms",
    fail_rate: Annotated[float, typer.Option(help="share of devices that fail (auth, hang, 5xx, slow)")] = 0.0,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8090,
    seed: Annotated[int, typer.Option()] = 0,
    export: Annotated[Path | None, typer.Option(help="write registration JSON lines here first")] = None,
) -> None:
    """Serve a fleet of simulated Rainforest Eagles on one port (the cloud API's shape)."""
    from services.poller.simulator import SimulatedFleet, parse_latency, simulator_server

    fleet = SimulatedFleet(count=count, latency=parse_latency(latency), fail_rate=fail_rate, seed=seed)
    if export is not None:
        export.write_bytes(b"".join(orjson.dumps(item) + b"\n" for item in fleet.fixtures()))
        typer.echo(f"wrote {count} device records to {export}", err=True)
    modes: dict[str, int] = {}
    for device in fleet.devices.values():
        modes[device.mode] = modes.get(device.mode, 0) + 1
    typer.echo(f"simulating {count} Eagles on http://{host}:{port} ({modes})", err=True)
    _run(simulator_server(fleet, host=host, port=port).serve())


def poller(
    replica_id: Annotated[str | None, typer.Option(help="replica name (default host-pid)")] = None,
    rotate_every: Annotated[float, typer.Option(help="seconds between log rotations; 0 disables")] = 300.0,
) -> None:
    """Run one poller replica: take shard leases and poll its devices until SIGTERM."""
    from services.poller.replica import run_replica
    from services.poller.settings import PollerSettings
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


def register(app: typer.Typer) -> None:
    """Add the poller's commands to the ``headwater`` CLI."""
    app.add_typer(devices_app, name="devices")
    app.command("simulate-devices")(simulate_devices)
    app.command("poller")(poller)


if __name__ == "__main__":
    standalone = typer.Typer(no_args_is_help=True)
    register(standalone)
    standalone()
