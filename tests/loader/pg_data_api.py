"""A stand-in for the Redshift Data API that runs the statements on a real Postgres.

The Data API and Redshift cannot run here, and moto's statements never finish, so the adapter's whole load path
(ensure_table, the date's transaction, counts, the advertising view, VACUUM/ANALYZE) is driven against this
client instead. It takes the same calls and parameters as aiobotocore's ``redshift-data`` client and records
them; each statement runs on Postgres with Redshift's own parts translated where the dialects part:

- ``DISTSTYLE ... SORTKEY ...`` is cut off the CREATE TABLE (asserted as text elsewhere);
- ``svv_columns`` is read from ``information_schema.columns``;
- ``COPY <stage> FROM 's3://...' IAM_ROLE '...' FORMAT AS PARQUET|ORC [MANIFEST]`` reads the manifest's parts (or the
  one object) from S3 and inserts their rows into the staging table by position, as Redshift maps columnar files.

A batch runs as one transaction, as BatchExecuteStatement does.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

_COPY = re.compile(
    r"^COPY (?P<stage>\"[^\"]+\") FROM '(?P<url>s3://[^']+)' IAM_ROLE '[^']+' "
    r"FORMAT AS (?P<format>PARQUET|ORC)(?P<manifest> MANIFEST)?$"
)


@dataclass
class Statement:
    id: str
    sqls: list[str]
    target: dict[str, str]
    status: str = "SUBMITTED"
    error: str = ""
    result_rows: int = -1
    records: list[list[dict[str, Any]]] = field(default_factory=list)


def _split_url(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


def _naive_utc(value: Any) -> Any:
    # timestamp (without zone) columns hold UTC wall clock, as Redshift stores COPY'd UTC instants
    return value.replace(tzinfo=None) if isinstance(value, datetime) and value.tzinfo else value


def _field(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


class PostgresDataApi:
    """The ``redshift-data`` calls the adapter makes, run on Postgres; ``calls`` keeps what each one named."""

    def __init__(self, dsn: str, s3: Any) -> None:
        self.dsn = dsn
        self.s3 = s3
        self.calls: list[dict[str, Any]] = []
        self.statements: dict[str, Statement] = {}

    async def _read(self, url: str, file_format: str) -> pa.Table:
        bucket, key = _split_url(url)
        body = await (await self.s3.get_object(Bucket=bucket, Key=key))["Body"].read()
        return orc.ORCFile(io.BytesIO(body)).read() if file_format == "ORC" else pq.read_table(io.BytesIO(body))

    async def _copy(self, con: asyncpg.Connection, match: re.Match[str]) -> int:
        urls = [match["url"]]
        if match["manifest"]:
            bucket, key = _split_url(match["url"])
            manifest = json.loads(await (await self.s3.get_object(Bucket=bucket, Key=key))["Body"].read())
            urls = [entry["url"] for entry in manifest["entries"]]
        stage = match["stage"].strip('"')
        rows = 0
        for url in urls:
            table = await self._read(url, match["format"])
            records = [tuple(_naive_utc(v) for v in row.values()) for row in table.to_pylist()]
            await con.copy_records_to_table(stage, records=records)
            rows += len(records)
        return rows

    async def _run_one(self, con: asyncpg.Connection, sql: str, statement: Statement) -> None:
        if match := _COPY.match(sql):
            statement.result_rows = await self._copy(con, match)
            return
        if sql.startswith("CREATE TABLE"):
            sql = sql.partition(" DISTSTYLE ")[0]
        sql = sql.replace("FROM svv_columns", "FROM information_schema.columns")
        if sql.startswith("SELECT"):
            rows = await con.fetch(sql)
            statement.records = [[_field(v) for v in row.values()] for row in rows]
            statement.result_rows = len(rows)
            return
        status = await con.execute(sql)  # "DELETE 3", "INSERT 0 5", "CREATE TABLE", ...
        affected = status.startswith(("DELETE", "INSERT", "UPDATE"))
        statement.result_rows = int(status.rsplit(" ", 1)[-1]) if affected else -1

    async def _run(self, statement: Statement) -> dict[str, Any]:
        con = await asyncpg.connect(self.dsn)
        try:
            if len(statement.sqls) == 1:
                await self._run_one(con, statement.sqls[0], statement)
            else:
                async with con.transaction():
                    for sql in statement.sqls:
                        await self._run_one(con, sql, statement)
            statement.status = "FINISHED"
        except (asyncpg.PostgresError, OSError) as exc:
            statement.status, statement.error = "FAILED", f"{type(exc).__name__}: {exc}"
        finally:
            await con.close()
        return {"Id": statement.id, **statement.target}

    def _start(self, sqls: list[str], target: dict[str, str]) -> Statement:
        self.calls.append({"Sqls": sqls, **target})
        statement = Statement(id=str(uuid.uuid4()), sqls=sqls, target=target)
        self.statements[statement.id] = statement
        return statement

    async def execute_statement(self, *, Sql: str, **target: str) -> dict[str, Any]:
        return await self._run(self._start([Sql], target))

    async def batch_execute_statement(self, *, Sqls: list[str], **target: str) -> dict[str, Any]:
        return await self._run(self._start(list(Sqls), target))

    async def describe_statement(self, *, Id: str) -> dict[str, Any]:
        statement = self.statements[Id]
        described = {"Id": Id, "Status": statement.status, "ResultRows": statement.result_rows, **statement.target}
        return described | ({"Error": statement.error} if statement.error else {})

    async def get_statement_result(self, *, Id: str) -> dict[str, Any]:
        return {"Records": self.statements[Id].records}

    async def cancel_statement(self, *, Id: str) -> dict[str, Any]:
        return {"Status": False}
