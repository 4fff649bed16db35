"""The ``headwater`` command line: mesh lifecycle (up, demo, status, bootstrap, keys) plus each service's commands."""

from __future__ import annotations

import importlib

import typer

from headwater import keys, lifecycle

app = typer.Typer(
    name="headwater",
    help="Headwater: an async, event-driven data pipeline mesh.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
lifecycle.register(app)
app.add_typer(keys.app, name="keys")
importlib.import_module("headwater.openapi_cmd").register(app)  # openapi write|check

# Each service contributes its own commands (loadgen, pump, log2schema, ...) from services/<name>/cli.py,
# a module exposing ``register(app: typer.Typer) -> None``.
for _service in ("ingest", "transform", "loader", "replay", "poller"):
    try:
        _module = importlib.import_module(f"services.{_service}.cli")
    except ModuleNotFoundError as exc:
        if exc.name != f"services.{_service}.cli":
            raise
        continue
    _module.register(app)


if __name__ == "__main__":
    app()
