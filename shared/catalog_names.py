"""Names in the Glue Data Catalog and Athena that transform (the writer) and replay (a reader) share.

One database per deployment prefix holds the curated tables:

- ``<table>_v<version>``: one table per schema version, partitioned by day, its columns exactly that version's;
- ``<table>_v<version>_hourly``: the hour runs of that version (partitioned by day and hour);
- ``<table>``: every version's daily partitions under one table whose columns only grow (schema evolution adds
  columns; a column a later version drops stays, null in its partitions), partitioned by day and
  ``schema_version``.

Glue and Athena names are lower-case letters, digits and ``_`` (Athena refuses ``-``), so the prefix's other
characters become ``_``.
"""

from __future__ import annotations

import re

from shared.settings import HeadwaterSettings

CATALOG = "AwsDataCatalog"
VERSION_KEY = "schema_version"


def _identifier(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def catalog_database(settings: HeadwaterSettings) -> str:
    """Return the Glue database of the deployment's curated tables (``hw`` -> ``hw_curated``)."""
    return _identifier(f"{settings.resource_prefix}_curated")


def version_table(table: str, version: int, *, hourly: bool = False) -> str:
    """Return the Glue table of one schema version (``_hourly`` for its hour partitions)."""
    return f"{table}_v{version}{'_hourly' if hourly else ''}"


def athena_workgroup(settings: HeadwaterSettings) -> str:
    """Return the Athena workgroup bootstrap creates for the deployment (results in the replay bucket)."""
    return f"{settings.resource_prefix}-replay"


def athena_output_location(settings: HeadwaterSettings) -> str:
    """Return where Athena writes the results of the deployment's queries."""
    return f"s3://{settings.bucket('replay')}/_athena/"
