"""Warehouse adapters (DuckDB, Postgres, Redshift) behind one interface, chosen per job."""

from __future__ import annotations

from typing import Any

from services.loader.settings import LoaderSettings
from services.loader.warehouse.base import LoadInput, WarehouseAdapter, partition_column, table_columns

__all__ = ["LoadInput", "WarehouseAdapter", "open_adapter", "partition_column", "table_columns"]


def open_adapter(name: str, settings: LoaderSettings, aws: Any = None) -> WarehouseAdapter:
    """Return the adapter for a job's warehouse name."""
    if name == "duckdb":
        from services.loader.warehouse.duckdb import DuckDBWarehouse

        return DuckDBWarehouse(settings.warehouse_path, scratch_dir=settings.loader_dir / "scratch")
    if name == "postgres":
        from services.loader.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(settings.postgres_warehouse_url, scratch_dir=settings.loader_dir / "scratch")
    if name == "redshift":
        from services.loader.warehouse.redshift import RedshiftWarehouse

        return RedshiftWarehouse(settings, aws)
    raise ValueError(f"unknown warehouse {name!r}")
