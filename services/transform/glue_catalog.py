"""Register published curated partitions in the Glue Data Catalog, so Athena, Trino or Spark read them by name.

Called after a run published its partition (the manifest is written): the database, the tables and the
partition are created when missing and updated when they differ, so a rerun or a retry changes nothing. Table
names and the evolving table are described in ``shared.catalog_names``.

The curated files follow Hive's layout: the partition column lives in the path only (``dt=``), so the catalog
gives it back as a partition key named as the schema names it (``partition_column``, else ``dt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.transform.engine.arrow_types import file_columns
from services.transform.models import TransformRun
from services.transform.registry import load_schema
from services.transform.wiring import TransformWiring
from shared.catalog_names import VERSION_KEY, catalog_database, version_table
from shared.contracts import CuratedPartition, curated_table_prefix
from shared.logging import get_logger
from shared.retry import is_transient
from shared.schemas import TableSchema
from shared.settings import HeadwaterSettings

log = get_logger(__name__)

# The Hive classes Athena, Trino and Spark expect for each output format.
FORMATS: dict[str, dict[str, Any]] = {
    "parquet": {
        "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
    },
    "orc": {
        "InputFormat": "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
        "OutputFormat": "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.orc.OrcSerde"},
    },
}
_HIVE_TYPES = {
    "smallint": "smallint",
    "integer": "int",
    "bigint": "bigint",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}


def hive_type(sql_type: str) -> str:
    """Return the Hive type of a schema's SQL type (varchar and char are Parquet strings)."""
    if sql_type.startswith(("varchar", "char")):
        return "string"
    if sql_type.startswith("decimal"):
        return sql_type.replace(" ", "")
    return _HIVE_TYPES[sql_type]


def day_key(schema: TableSchema) -> str:
    """Return the name of the day partition key: the schema's partition column, else ``dt``."""
    if schema.partition_column:
        return schema.partition_column
    names = {c.name for c in schema.columns}
    return "dt" if "dt" not in names else "partition_dt"  # a data column called dt keeps its name


def data_columns(schema: TableSchema) -> list[dict[str, str]]:
    """Return the Glue columns of the files (the partition column excluded: it is in the path)."""
    kept = file_columns(schema, partitioned=True)
    return [
        {"Name": c.name, "Type": hive_type(c.type), **({"Comment": c.source} if c.source != c.name else {})}
        for c in schema.columns
        if c.name in kept
    ]


def merge_columns(existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``existing`` with ``new``'s columns appended (evolution adds), a changed type taking the newer one."""
    by_name = {c["Name"]: c for c in new}
    merged = [{**c, "Type": by_name[c["Name"]]["Type"]} if c["Name"] in by_name else c for c in existing]
    known = {c["Name"] for c in existing}
    return merged + [c for c in new if c["Name"] not in known]


@dataclass(frozen=True)
class CatalogTarget:
    """Where a published partition goes in the catalog."""

    database: str
    location: str  # s3://bucket/ of the curated bucket
    output_format: str


def _storage(columns: list[dict[str, Any]], location: str, output_format: str) -> dict[str, Any]:
    return {"Columns": columns, "Location": location, **FORMATS[output_format]}


def _table_input(
    name: str, *, description: str, columns: list[dict[str, Any]], keys: list[dict[str, str]], location: str, fmt: str
) -> dict[str, Any]:
    return {
        "Name": name,
        "Description": description[:2048],
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "EXTERNAL": "TRUE",
            "classification": fmt,
            "headwater.managed": "true",
            # ORC is read by position unless told otherwise; versions add columns, so read by name.
            **({"orc.column.index.access": "false"} if fmt == "orc" else {}),
        },
        "PartitionKeys": keys,
        "StorageDescriptor": _storage(columns, location, fmt),
    }


def _same_table(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    storage = current.get("StorageDescriptor", {})
    return (
        storage.get("Columns", []) == wanted["StorageDescriptor"]["Columns"]
        and storage.get("Location") == wanted["StorageDescriptor"]["Location"]
        and storage.get("InputFormat") == wanted["StorageDescriptor"]["InputFormat"]
        and current.get("PartitionKeys", []) == wanted["PartitionKeys"]
    )


async def ensure_database(glue: Any, database: str, bucket: str) -> None:
    """Create the database when it does not exist."""
    try:
        await glue.get_database(Name=database)
    except glue.exceptions.EntityNotFoundException:
        try:
            await glue.create_database(
                DatabaseInput={"Name": database, "Description": f"Headwater curated tables in s3://{bucket}/"}
            )
            log.info("catalog_database_created", database=database)
        except glue.exceptions.AlreadyExistsException:
            pass  # created meanwhile by another worker


async def _ensure_table(glue: Any, database: str, wanted: dict[str, Any], *, evolve: bool) -> None:
    """Create the table, or update it when it differs (``evolve``: only ever add columns to it)."""
    try:
        current = (await glue.get_table(DatabaseName=database, Name=wanted["Name"]))["Table"]
    except glue.exceptions.EntityNotFoundException:
        try:
            await glue.create_table(DatabaseName=database, TableInput=wanted)
            log.info("catalog_table_created", database=database, table=wanted["Name"])
            return
        except glue.exceptions.AlreadyExistsException:
            current = (await glue.get_table(DatabaseName=database, Name=wanted["Name"]))["Table"]
    if evolve:
        columns = merge_columns(
            current.get("StorageDescriptor", {}).get("Columns", []), wanted["StorageDescriptor"]["Columns"]
        )
        # Partition keys cannot change under existing partitions: the first version's stay.
        wanted = {
            **wanted,
            "PartitionKeys": current.get("PartitionKeys") or wanted["PartitionKeys"],
            "StorageDescriptor": {**wanted["StorageDescriptor"], "Columns": columns},
        }
    if not _same_table(current, wanted):
        await glue.update_table(DatabaseName=database, TableInput=wanted)
        log.info("catalog_table_updated", database=database, table=wanted["Name"])


async def _ensure_partition(glue: Any, database: str, table: str, values: list[str], storage: dict[str, Any]) -> None:
    partition = {"Values": values, "StorageDescriptor": storage}
    try:
        await glue.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition)
    except glue.exceptions.AlreadyExistsException:
        # A rerun: same location; the format or the columns may have changed with the settings.
        await glue.update_partition(
            DatabaseName=database, TableName=table, PartitionValueList=values, PartitionInput=partition
        )


async def register_partition(
    glue: Any, settings: HeadwaterSettings, schema: TableSchema, partition: CuratedPartition, output_format: str
) -> None:
    """Register ``partition`` (published) and its tables in the catalog; idempotent."""
    bucket = settings.bucket("curated")
    database = catalog_database(settings)
    await ensure_database(glue, database, bucket)
    root = f"s3://{bucket}/"
    columns = data_columns(schema)
    day = {"Name": day_key(schema), "Type": "date"}
    description = schema.description or f"{schema.name} v{schema.version} (Headwater curated)"
    version_location = f"{root}{curated_table_prefix(schema.name, schema.version)}"
    storage = _storage(columns, f"{root}{partition.prefix}", output_format)
    dt = partition.dt.isoformat()
    if partition.hour is not None:
        name = version_table(schema.name, schema.version, hourly=True)
        keys = [day, {"Name": "hour", "Type": "int"}]
        table = _table_input(
            name, description=description, columns=columns, keys=keys, location=version_location, fmt=output_format
        )
        await _ensure_table(glue, database, table, evolve=False)
        await _ensure_partition(glue, database, name, [dt, str(partition.hour)], storage)
        log.info("catalog_partition_registered", table=name, dt=dt, hour=partition.hour)
        return
    name = version_table(schema.name, schema.version)
    table = _table_input(
        name, description=description, columns=columns, keys=[day], location=version_location, fmt=output_format
    )
    await _ensure_table(glue, database, table, evolve=False)
    await _ensure_partition(glue, database, name, [dt], storage)
    # The evolving table: every version's days, told apart by schema_version.
    evolving = _table_input(
        schema.name,
        description=f"{schema.name}, every schema version (Headwater curated)",
        columns=columns,
        keys=[day, {"Name": VERSION_KEY, "Type": "int"}],
        location=f"{root}{schema.name}/",
        fmt=output_format,
    )
    await _ensure_table(glue, database, evolving, evolve=True)
    await _ensure_partition(glue, database, schema.name, [dt, str(schema.version)], storage)
    log.info("catalog_partition_registered", table=name, dt=dt, versions_table=schema.name)


async def register_run(wiring: TransformWiring, run: TransformRun) -> None:
    """Register a succeeded run's partition when the catalog is on; transient errors raise (the caller retries).

    Any other error (no permission, say) is logged and swallowed: the partition is published and loadable, and
    the next run of it registers it again.
    """
    settings = wiring.settings
    if run.state != "succeeded" or not settings.glue_catalog:
        return
    async with wiring.sessions() as session:
        schema = await load_schema(session=session, name=run.table_name, version=run.schema_version)
    partition = CuratedPartition(schema.name, schema.version, run.dt, run.hour)
    try:
        await register_partition(await wiring.aws.get("glue"), settings, schema, partition, settings.output_format)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.error("catalog_registration_failed", transform_id=run.id, table=run.table_name, error=str(exc)[:500])
