"""How every ``headwater`` command prints: rich tables for people, ``--json`` for scripts, progress on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for scripts instead of a table")]

# Without a terminal rich assumes 80 columns and squeezes tables; a pipe or log file gets wide rows instead.
_PIPE_WIDTH = 160


def _width(stream: Any) -> int | None:
    return None if stream.isatty() or os.environ.get("COLUMNS") else _PIPE_WIDTH


def out() -> Console:
    """Return a console on standard output (built per call: tests swap sys.stdout)."""
    return Console(file=sys.stdout, width=_width(sys.stdout))


def err() -> Console:
    """Return a console on standard error, for progress, notes and errors."""
    return Console(file=sys.stderr, width=_width(sys.stderr))


def emit_json(data: Any) -> None:
    """Print ``data`` as one indented JSON document on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit_json_lines(items: Iterable[Any]) -> None:
    """Print each item as one compact JSON line (streams of records)."""
    for item in items:
        sys.stdout.write(json.dumps(item, default=str, separators=(",", ":")) + "\n")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    """Build a table; ``None`` cells show empty."""
    result = Table(*columns, title=title)
    for row in rows:
        result.add_row(*("" if cell is None else str(cell) for cell in row))
    return result


def fields_table(data: dict[str, Any], title: str | None = None) -> Table:
    """Build a two-column table of one object's fields (nested values as compact JSON)."""
    rows = [
        (key, json.dumps(value, default=str) if isinstance(value, dict | list) else value)
        for key, value in data.items()
    ]
    return table(("field", "value"), rows, title=title)


def emit(data: Any, as_json: bool, human: Any) -> None:
    """Print ``data`` as JSON for scripts, else ``human`` (a table, or a line of text) for people."""
    if as_json:
        emit_json(data)
    elif isinstance(human, str):
        typer.echo(human)
    else:
        show(human)


def show(renderable: Any) -> None:
    """Print a table (or any rich renderable) on standard output."""
    out().print(renderable)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` on standard error and return the Exit to raise."""
    typer.echo(message, err=True)
    return typer.Exit(code)


def progress(label: str, unit: str = "") -> Progress:
    """Return a progress bar on standard error (stdout stays clean for ``--json`` and pipes)."""
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    columns += [TextColumn("{task.fields[note]}"), TimeElapsedColumn()]
    return Progress(*columns, console=err(), transient=False)
