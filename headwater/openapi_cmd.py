"""``headwater openapi``: the committed OpenAPI documents integrators build on (``docs/openapi/<service>.json``).

After changing any route, model or example, regenerate every committed spec with the one command::

    headwater openapi write

``headwater openapi check`` exits 1 and names each service whose committed spec differs from what the code
generates (``tests/shared/test_openapi.py`` fails the same way). Specs are built from each service's
``create_app`` with default settings (environment and ``.env`` ignored, so the output does not depend on the
machine) and ``app.openapi()`` only: no lifespan runs and nothing is connected. Output is deterministic:
sorted keys, two-space indent, a trailing newline.
"""

from __future__ import annotations

import importlib
import json
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from headwater.config import SERVICES

SPEC_DIR = Path(__file__).resolve().parents[1] / "docs" / "openapi"

app = typer.Typer(help="Write or check the committed OpenAPI specs (docs/openapi/*.json).", no_args_is_help=True)


def _defaults_only(settings_class: type[BaseSettings]) -> BaseSettings:
    """Build ``settings_class`` from its defaults alone (no environment, no dotenv)."""

    class Defaults(settings_class):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *args: Any, **kwargs: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    Defaults.__name__ = Defaults.__qualname__ = settings_class.__name__
    return Defaults()


def _settings_class(create_app: Any) -> type[BaseSettings]:
    hint = typing.get_type_hints(create_app)["settings"]
    return next(arg for arg in typing.get_args(hint) or (hint,) if arg is not type(None))


def build_app(service: str) -> FastAPI:
    """Build ``service``'s app with default settings, without running its lifespan."""
    create_app = importlib.import_module(f"services.{service}.app").create_app
    return create_app(_defaults_only(_settings_class(create_app)))


def generate_spec(service: str) -> dict[str, Any]:
    """Return the OpenAPI document ``service`` serves."""
    return build_app(service).openapi()


def render_spec(document: dict[str, Any]) -> str:
    """Render a document the way it is committed: sorted keys, indent 2, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def spec_path(service: str, directory: Path = SPEC_DIR) -> Path:
    """Return where ``service``'s spec is committed."""
    return directory / f"{service}.json"


class SpecError(RuntimeError):
    """A service's app could not be built or its document generated."""


def _rendered(service: str) -> str:
    try:
        return render_spec(generate_spec(service))
    except Exception as exc:  # one broken service must not hide the state of the others
        raise SpecError(f"{service}: cannot generate its spec ({type(exc).__name__}: {exc})") from exc


def write_specs(directory: Path = SPEC_DIR, services: Iterable[str] = SERVICES) -> tuple[list[Path], list[str]]:
    """Regenerate each service's committed spec; return the files changed and the services that failed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed, failed = [], []
    for service in services:
        path = spec_path(service, directory)
        try:
            text = _rendered(service)
        except SpecError as exc:
            failed.append(str(exc))
            continue
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed, failed


def stale_specs(directory: Path = SPEC_DIR, services: Iterable[str] = SERVICES) -> dict[str, str]:
    """Return each service whose committed spec is missing or differs from the generated one, with why."""
    stale = {}
    for service in services:
        path = spec_path(service, directory)
        try:
            text = _rendered(service)
        except SpecError as exc:
            stale[service] = str(exc)
            continue
        if not path.exists():
            stale[service] = f"{service}: {path} is missing"
        elif path.read_text(encoding="utf-8") != text:
            stale[service] = f"{service}: {path} differs from the code"
    return stale


DirOption = Annotated[Path, typer.Option("--dir", help="where the specs live", file_okay=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as one JSON object")]


@app.command()
def write(directory: DirOption = SPEC_DIR, as_json: JsonOption = False) -> None:
    """Regenerate docs/openapi/<service>.json for every service."""
    changed, failed = write_specs(directory)
    if as_json:
        typer.echo(json.dumps({"written": [str(path) for path in changed], "failed": failed}))
    else:
        for path in changed:
            typer.echo(f"wrote {path}", err=True)
        for reason in failed:
            typer.echo(reason, err=True)
        if not changed and not failed:
            typer.echo(f"all {len(SERVICES)} specs up to date in {directory}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def check(directory: DirOption = SPEC_DIR, as_json: JsonOption = False) -> None:
    """Exit 1, naming each service whose committed spec differs from the code."""
    stale = stale_specs(directory)
    if as_json:
        typer.echo(json.dumps({"stale": stale}, sort_keys=True))
    elif stale:
        for reason in stale.values():
            typer.echo(reason, err=True)
        typer.echo(f"out of date: {', '.join(stale)} (run `headwater openapi write`)", err=True)
    else:
        typer.echo(f"all {len(SERVICES)} specs match the code", err=True)
    if stale:
        raise typer.Exit(1)


def register(cli: typer.Typer) -> None:
    """Add the ``openapi`` group to the ``headwater`` command."""
    cli.add_typer(app, name="openapi")
