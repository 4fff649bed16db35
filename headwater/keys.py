"""``headwater keys``: create and revoke integrator API keys (stored hashed)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from headwater.config import CliSettings
from headwater.mesh import adopt_running_mesh_environment
from headwater.setup_steps import new_api_key
from shared.auth import SCOPES, revoke_api_key
from shared.db import create_engine, session_factory

app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@app.command()
def create(
    scope: Annotated[list[str], typer.Option("--scope", help=f"one or more of: {', '.join(SCOPES)}")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create a key with the given scopes and print it alone on standard output (shown once)."""
    adopt_running_mesh_environment(CliSettings())
    try:
        key = asyncio.run(new_api_key(CliSettings(), list(scope), name))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    sys.stdout.write(key + "\n")


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="the id part of the key (hw_<id>_...)")]) -> None:
    """Revoke a key by its id."""

    async def _revoke() -> bool:
        engine = create_engine(CliSettings())
        try:
            async with session_factory(engine)() as session:
                return await revoke_api_key(session=session, key_id=key_id)
        finally:
            await engine.dispose()

    adopt_running_mesh_environment(CliSettings())
    if not asyncio.run(_revoke()):
        typer.echo(f"no key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}", err=True)
