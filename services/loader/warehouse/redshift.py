"""Redshift warehouse through the Data API (aiobotocore ``redshift-data``).

Each job names its own target (``RedshiftTarget``): a provisioned cluster (ClusterIdentifier with DbUser or
SecretArn) or a Serverless workgroup (WorkgroupName, with SecretArn or the caller's IAM identity); jobs created
without one keep the loader's configured cluster.

DDL comes from the schema (DISTKEY, COMPOUND SORTKEY led by the partition column); a date loads with
``DELETE`` of the date, ``COPY ... FROM '<manifest>' IAM_ROLE ... FORMAT AS PARQUET MANIFEST`` into a temporary
table and an ``INSERT`` adding the date (the files carry it in their path only) in one
transaction (BatchExecuteStatement runs its statements as one transaction). The day's advertising view (one
Parquet object) is loaded the same way into ``advertising_<table>``. Every statement is polled
with a deadline: FINISHED returns, FAILED and ABORTED raise, and a statement still running at the
deadline is cancelled and raised as transient so the date is retried.

Where the dialects meet (DELETE, temporary staging table, INSERT ... SELECT, ALTER TABLE ADD COLUMN, VACUUM,
ANALYZE) the statements are run on a real Postgres by the tests; COPY, DISTKEY/SORTKEY and svv_columns are
Redshift's own and are checked as text.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

from services.loader.models import RedshiftTarget
from services.loader.settings import LoaderSettings
from services.loader.warehouse.base import (
    DEFAULT_PARTITION_COLUMN,
    LoadInput,
    partition_column,
    quote,
    table_columns,
)
from shared.retry import TransientError
from shared.schemas import Column, TableSchema

# The advertising view's table: one row per ad and day (transform's VIEW_SCHEMA, with dt from the view's path).
ADVERTISING_VIEW_SCHEMA = TableSchema(
    name="advertising_view",
    version=1,
    columns=[
        Column(name="ad_id", type="varchar(256)", nullable=False),
        Column(name="impressions", type="bigint", nullable=False),
        Column(name="clicks", type="bigint", nullable=False),
        Column(name="ctr", type="double precision", nullable=False),
        Column(name="dt", type="date", nullable=False),
    ],
    partition_column="dt",
    sort_key=["ad_id"],
    dist_key="ad_id",
)


def advertising_table(table: str) -> str:
    """Return the Redshift table the advertising view of ``table`` loads into."""
    return f"advertising_{table}"


class RedshiftStatementError(RuntimeError):
    """A statement FAILED or was ABORTED."""


class RedshiftTimeout(TransientError):
    """A statement did not finish before the deadline (it was cancelled)."""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_table_sql(table: str, schema: TableSchema) -> str:
    """Return the CREATE TABLE for a schema, with its dist and sort keys."""
    columns = table_columns(schema)
    body = ", ".join(
        f"{quote(name)} {sql_type}{'' if _nullable(schema, name) else ' NOT NULL'}" for name, sql_type in columns
    )
    sort = [partition_column(schema), *(key for key in schema.sort_key if key != partition_column(schema))]
    dist = f"DISTSTYLE KEY DISTKEY ({quote(schema.dist_key)})" if schema.dist_key else "DISTSTYLE AUTO"
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(table)} ({body}) {dist} "
        f"COMPOUND SORTKEY ({', '.join(quote(k) for k in sort)})"
    )


def _nullable(schema: TableSchema, name: str) -> bool:
    try:
        return schema.column(name).nullable
    except KeyError:
        return True


def copy_sql(stage: str, source_url: str, iam_role: str, *, file_format: str = "PARQUET", manifest: bool = True) -> str:
    """Return the COPY of a manifest's files (or of one object) into the staging table (Redshift only)."""
    suffix = " MANIFEST" if manifest else ""
    return f"COPY {stage} FROM {_literal(source_url)} IAM_ROLE {_literal(iam_role)} FORMAT AS {file_format}{suffix}"


def load_sqls(
    table: str,
    schema: TableSchema,
    dt: date,
    manifest_url: str,
    iam_role: str,
    *,
    file_format: str = "PARQUET",
    manifest: bool = True,
) -> list[str]:
    """Return the statements that replace one date: DELETE of the date, COPY of its manifest, INSERT with the date.

    Curated files leave the partition column to their ``dt=`` path (Hive's convention) and Parquet COPY maps
    columns by position, so the files go to a temporary table of their own columns first, and the date is added
    by the INSERT into the table.
    """
    part = partition_column(schema)
    stage = quote(f"{table[:100]}__load")
    in_file = [(name, sql_type) for name, sql_type in table_columns(schema) if name != part]
    names = ", ".join(quote(name) for name, _ in in_file)
    ddl = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in in_file)
    day = _literal(dt.isoformat())
    return [
        delete_date_sql(table, part, dt),
        f"CREATE TEMP TABLE {stage} ({ddl})",
        copy_sql(stage, manifest_url, iam_role, file_format=file_format, manifest=manifest),
        f"INSERT INTO {quote(table)} ({names}, {quote(part)}) SELECT {names}, DATE {day} FROM {stage}",
        f"DROP TABLE {stage}",
    ]


def add_column_sql(table: str, name: str, sql_type: str) -> str:
    """Return the ALTER TABLE adding one column of a newer schema version."""
    return f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {sql_type}"


def delete_date_sql(table: str, column: str, dt: date) -> str:
    """Return the DELETE of one date's rows."""
    return f"DELETE FROM {quote(table)} WHERE {quote(column)} = {_literal(dt.isoformat())}"


def maintenance_sqls(table: str) -> list[str]:
    """Return VACUUM then ANALYZE; each runs alone (Redshift refuses VACUUM inside a transaction)."""
    return [f"VACUUM {quote(table)}", f"ANALYZE {quote(table)}"]


def transaction_block(sqls: list[str]) -> str:
    """Return the statements as one explicit transaction (for emulators without BatchExecuteStatement)."""
    return "BEGIN;\n" + ";\n".join(sqls) + ";\nCOMMIT;"


async def wait_statement(client: Any, statement_id: str, *, timeout_s: float, poll_s: float) -> dict[str, Any]:
    """Poll a statement until it ends; return its description when FINISHED.

    FAILED and ABORTED raise RedshiftStatementError; past the deadline the statement is cancelled and
    RedshiftTimeout (transient) is raised.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        description = await client.describe_statement(Id=statement_id)
        status = description["Status"]
        if status == "FINISHED":
            return description
        if status == "FAILED":
            raise RedshiftStatementError(f"statement {statement_id} failed: {description.get('Error', '')}")
        if status == "ABORTED":
            raise RedshiftStatementError(f"statement {statement_id} was aborted")
        if time.monotonic() >= deadline:
            try:
                await client.cancel_statement(Id=statement_id)
            except Exception:  # already ended, or cancel refused: the timeout is what matters
                pass
            raise RedshiftTimeout(f"statement {statement_id} still {status} after {timeout_s}s; cancelled")
        await asyncio.sleep(poll_s)


class RedshiftWarehouse:
    """A Redshift cluster or Serverless workgroup as the warehouse, driven through the Data API."""

    name = "redshift"

    def __init__(
        self,
        settings: LoaderSettings,
        aws: Any,
        *,
        target: RedshiftTarget | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.aws = aws
        self.target = target or RedshiftTarget(
            cluster_id=settings.redshift_cluster_id,
            database=settings.redshift_database,
            db_user=settings.redshift_db_user,
        )
        self.timeout_s = timeout_s if timeout_s is not None else settings.redshift_statement_timeout_s
        self.statement_ids: list[str] = []

    def _target(self) -> dict[str, str]:
        return self.target.data_api_params()

    async def execute(self, sqls: list[str]) -> dict[str, Any]:
        """Run one statement, or several as one transaction; wait for the end and return its description."""
        client = await self.aws.get("redshift-data")
        if len(sqls) == 1:
            response = await client.execute_statement(Sql=sqls[0], **self._target())
        elif self.settings.redshift_batch_api:
            response = await client.batch_execute_statement(Sqls=sqls, **self._target())
        else:
            # Emulators without BatchExecuteStatement: the same statements in one explicit transaction block.
            response = await client.execute_statement(Sql=transaction_block(sqls), **self._target())
        self.statement_ids.append(response["Id"])
        return await wait_statement(
            client, response["Id"], timeout_s=self.timeout_s, poll_s=self.settings.redshift_poll_interval_s
        )

    async def query_scalar(self, sql: str) -> Any:
        """Run a query and return the first column of its first row."""
        description = await self.execute([sql])
        client = await self.aws.get("redshift-data")
        result = await client.get_statement_result(Id=description["Id"])
        records = result.get("Records") or [[{}]]
        field = records[0][0]
        return next(iter(field.values()), None) if field else None

    async def existing_columns(self, table: str) -> list[str]:
        """Return the table's columns (empty when it does not exist)."""
        description = await self.execute(
            [
                "SELECT column_name FROM svv_columns WHERE table_schema = current_schema() "
                f"AND table_name = {_literal(table)} ORDER BY ordinal_position"
            ]
        )
        client = await self.aws.get("redshift-data")
        result = await client.get_statement_result(Id=description["Id"])
        return [row[0].get("stringValue", "") for row in result.get("Records", [])]

    async def ensure_table(self, table: str, schema: TableSchema) -> list[str]:
        """Create the table from the schema, or add the schema's new columns (never drop); return columns added."""
        await self.execute([create_table_sql(table, schema)])
        existing = set(await self.existing_columns(table))
        added = []
        for name, sql_type in table_columns(schema):
            if existing and name not in existing:
                await self.execute([add_column_sql(table, name, sql_type)])
                added.append(name)
        return added

    async def copy_date(
        self, table: str, schema: TableSchema, dt: date, manifest_url: str, file_format: str = "parquet"
    ) -> None:
        """Replace the date's rows from the manifest (Parquet or ORC parts, both read by COPY) in one transaction."""
        role = self.settings.redshift_iam_role
        await self.execute(load_sqls(table, schema, dt, manifest_url, role, file_format=file_format.upper()))

    async def load_date(self, table: str, schema: TableSchema, dt: date, data: LoadInput) -> int:
        """Ensure the table, replace the date from the manifest, and return the date's row count."""
        await self.ensure_table(table, schema)
        await self.copy_date(table, schema, dt, data.manifest_url, data.file_format)
        return await self.count(table, dt, partition_column(schema))

    async def load_advertising_view(self, table: str, dt: date, view_url: str) -> int:
        """Replace the date's rows of ``advertising_<table>`` with the day's view object; return its rows."""
        target = advertising_table(table)
        await self.ensure_table(target, ADVERTISING_VIEW_SCHEMA)
        await self.execute(
            load_sqls(target, ADVERTISING_VIEW_SCHEMA, dt, view_url, self.settings.redshift_iam_role, manifest=False)
        )
        return await self.count(target, dt)

    async def delete_date(self, table: str, schema: TableSchema, dt: date) -> int:
        """Delete the date's rows (and its advertising view rows); return how many of the table's were deleted."""
        part = partition_column(schema)
        description = await self.execute([delete_date_sql(table, part, dt)])
        view = advertising_table(table)
        if await self.existing_columns(view):  # only tables feeding the advertising view have one
            await self.execute([delete_date_sql(view, DEFAULT_PARTITION_COLUMN, dt)])
        return max(0, int(description.get("ResultRows", 0)))

    async def count(self, table: str, dt: date | None = None, column: str = DEFAULT_PARTITION_COLUMN) -> int:
        """Count rows (of ``dt`` when given)."""
        where = f" WHERE {quote(column)} = {_literal(dt.isoformat())}" if dt else ""
        return int(await self.query_scalar(f"SELECT count(*) FROM {quote(table)}{where}") or 0)

    async def maintain(self, table: str) -> None:
        """VACUUM then ANALYZE (each outside a transaction, as Redshift requires for VACUUM)."""
        for sql in maintenance_sqls(table):
            await self.execute([sql])
