"""Transform's commands: ``headwater log2schema`` (infer a schema from JSON lines) and ``headwater spark-script``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.schemas import SchemaError, parse_schema_yaml


def log2schema(
    name: Annotated[str, typer.Option("--name", "-n", help="table name of the inferred schema")] = "inferred",
    version: Annotated[int, typer.Option("--version", help="schema version")] = 1,
    partition_from: Annotated[
        str | None, typer.Option("--partition-from", help="timestamp field whose UTC date is the dt partition")
    ] = None,
    max_lines: Annotated[int | None, typer.Option("--max-lines", help="stop after this many lines")] = None,
) -> None:
    """Read JSON lines (plain or gzip) on standard input and print an inferred schema YAML."""
    from services.transform.infer import Inference, build_schema, read_records, render_yaml

    inference = read_records(sys.stdin.buffer, Inference(), max_lines)
    try:
        schema, notes = build_schema(inference, name=name, version=version, partition_from=partition_from)
    except (ValueError, SchemaError) as exc:
        typer.echo(f"log2schema: {exc}", err=True)
        raise typer.Exit(1) from exc
    sys.stdout.write(render_yaml(schema, notes))


def spark_script(
    schema_file: Annotated[Path, typer.Argument(help="schema YAML file", exists=True, dir_okay=False)],
) -> None:
    """Print the PySpark script that applies a schema (the EMR/Glue engines run the same script)."""
    from services.transform.spark.script import generate_script

    try:
        schema = parse_schema_yaml(schema_file.read_text())
    except SchemaError as exc:
        typer.echo(f"spark-script: {exc}", err=True)
        raise typer.Exit(1) from exc
    sys.stdout.write(generate_script(schema))


def register(root: typer.Typer) -> None:
    """Add transform's commands to the ``headwater`` CLI."""
    root.command("log2schema")(log2schema)
    root.command("spark-script")(spark_script)
