"""``headwater keys list|create|revoke``: integrator API keys (stored hashed; the key is shown once)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from headwater import ui
from headwater.config import CliSettings
from headwater.mesh import adopt_running_mesh_environment
from headwater.setup_steps import list_api_keys, new_api_key
from shared.auth import SCOPES, revoke_api_key
from shared.db import create_engine, session_factory

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def _settings() -> CliSettings:
    """Return settings pointing at the running mesh's database when one runs."""
    adopt_running_mesh_environment(CliSettings())
    return CliSettings()


@app.command("list")
def list_keys(as_json: ui.JsonOption = False) -> None:
    """List every key: id, name, scopes, created, revoked (never the key or its hash)."""
    keys = asyncio.run(list_api_keys(_settings()))
    rows = [
        (k["key_id"], k["name"], " ".join(k["scopes"]), k["created_at"][:19], "yes" if k["revoked"] else "")
        for k in keys
    ]
    ui.emit(keys, as_json, ui.table(("key id", "name", "scopes", "created", "revoked"), rows))


@app.command()
def create(
    scope: Annotated[list[str], typer.Option("--scope", help=f"one or more of: {', '.join(SCOPES)}")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print key_id, name, scopes and key as JSON")] = False,
) -> None:
    """Create a key with the given scopes and print it alone on standard output (shown once)."""
    try:
        key = asyncio.run(new_api_key(_settings(), list(scope), name))
    except ValueError as exc:
        raise ui.fail(str(exc), 2) from exc
    if as_json:
        ui.emit_json({"key_id": key.split("_")[1], "name": name, "scopes": sorted(set(scope)), "key": key})
    else:
        sys.stdout.write(key + "\n")


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the id part of the key (hw_<id>_...)")]) -> None:
    """Revoke a key by its id."""

    async def _revoke(settings: CliSettings) -> bool:
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                return await revoke_api_key(session=session, key_id=key_id)
        finally:
            await engine.dispose()

    if not asyncio.run(_revoke(_settings())):
        raise ui.fail(f"no key with id {key_id}")
    typer.echo(f"revoked {key_id}", err=True)


def register(root: typer.Typer) -> None:
    """Add the ``keys`` group to ``headwater``."""
    root.add_typer(app, name="keys")
