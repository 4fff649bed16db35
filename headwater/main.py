"""The ``headwater`` command line: mesh lifecycle (up, demo, status, bootstrap, keys) plus each service's commands."""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import Annotated

import typer

from headwater import keys, lifecycle
from headwater.commands import ingest, loader, poller, replay, transform

app = typer.Typer(
    name="headwater",
    help="Headwater: an async, event-driven data pipeline mesh.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(version("headwater"))
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="print the package version and exit"),
    ] = False,
) -> None:
    """Headwater: an async, event-driven data pipeline mesh."""


lifecycle.register(app)
keys.register(app)
importlib.import_module("headwater.openapi_cmd").register(app)  # openapi write|check
importlib.import_module("headwater.commands.dlq").register(app)  # dlq list|redrive
# Each service's commands live here, above the services: they call its API or use its domain code.
for _commands in (ingest, transform, loader, replay, poller):
    _commands.register(app)


if __name__ == "__main__":
    app()
