"""Warehouse adapters (DuckDB, Postgres, Redshift) behind one interface, chosen per job."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.loader.models import TABLE_NAME, Job, RedshiftTarget
from services.loader.settings import LoaderSettings
from services.loader.warehouse.base import LoadInput, WarehouseAdapter, partition_column, table_columns
from shared.errors import UnprocessableError

__all__ = [
    "LoadInput",
    "WarehouseAdapter",
    "count_rows",
    "open_adapter",
    "open_job_adapter",
    "partition_column",
    "table_columns",
]


def open_adapter(
    name: str, settings: LoaderSettings, aws: Any = None, *, redshift: RedshiftTarget | None = None
) -> WarehouseAdapter:
    """Return the adapter for a warehouse name (Redshift on ``redshift``, else the configured cluster)."""
    if name == "duckdb":
        from services.loader.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(settings.warehouse_path, scratch_dir=settings.loader_dir / "scratch")
    if name == "postgres":
        from services.loader.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(settings.postgres_warehouse_url, scratch_dir=settings.loader_dir / "scratch")
    if name == "redshift":
        from services.loader.warehouse.redshift import RedshiftWarehouse

        return RedshiftWarehouse(settings, aws, target=redshift)
    raise ValueError(f"unknown warehouse {name!r}")


def open_job_adapter(job: Job, settings: LoaderSettings, aws: Any) -> WarehouseAdapter:
    """Return the adapter of a job's warehouse, on the job's own Redshift cluster or workgroup."""
    return open_adapter(job.warehouse, settings, aws, redshift=job.redshift)


async def count_rows(
    *, settings: LoaderSettings, aws: Any, warehouse: str, table: str, dt: date | None, column: str
) -> int:
    """Count a warehouse table's rows (of one date with ``dt``); 0 when the table does not exist."""
    # The names reach SQL as identifiers: only plain lower-case names pass.
    if not TABLE_NAME.match(table) or not TABLE_NAME.match(column):
        raise UnprocessableError("invalid table or column name", details=[{"field": "table", "reason": "bad name"}])
    return await open_adapter(warehouse, settings, aws).count(table, dt, column)
