"""Archive SQL on Athena (``query_engine: athena``): the curated tables of the Glue catalog, queried where they are.

The SQL (Athena's dialect, Trino) runs in the catalog database transform registers partitions in
(``shared.catalog_names``), in the deployment's workgroup, results written under the replay bucket. The answer has
the shape of the DuckDB engine's: JSON lines or an Arrow stream, typed from Athena's column metadata, cut by the
same row, byte and time limits with the same trailer, paged from ``GetQueryResults`` (``NextToken``) as the client
reads, so a large result is never held whole.

What this engine does not do: the ``raw_events``/``live_events``/``all_events`` views (they are DuckDB's, over the
raw archive and the Kinesis tail) and the ``sources``/``start``/``end`` mirroring hints (Athena prunes partitions
from the SQL's own ``WHERE dt = ...``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from services.replay.models import QueryRequest
from services.replay.query import ClientGone, Disconnected, QuerySlots, QueryStream, _Limits
from services.replay.sandbox import QueryRefused, parse_check
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.catalog_names import CATALOG, athena_output_location, athena_workgroup, catalog_database
from shared.logging import get_logger

log = get_logger(__name__)

_INTEGERS = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOATS = {"float", "real", "double"}
_RUNNING = {"QUEUED", "RUNNING"}


def submission(settings: ReplaySettings, sql: str) -> dict[str, Any]:
    """Return the ``StartQueryExecution`` request for ``sql``: the catalog database, workgroup and result place."""
    return {
        "QueryString": sql,
        "QueryExecutionContext": {"Database": catalog_database(settings), "Catalog": CATALOG},
        "WorkGroup": settings.athena_workgroup or athena_workgroup(settings),
        "ResultConfiguration": {"OutputLocation": settings.athena_output_location or athena_output_location(settings)},
    }


def arrow_field(column: dict[str, Any]) -> pa.Field:
    """Return the Arrow field of one Athena ``ColumnInfo`` (nested and unusual types stay Athena's text)."""
    kind = str(column.get("Type", "varchar")).lower()
    name = column.get("Label") or column["Name"]
    if kind in _INTEGERS:
        return pa.field(name, pa.int64())
    if kind in _FLOATS:
        return pa.field(name, pa.float64())
    if kind == "boolean":
        return pa.field(name, pa.bool_())
    if kind == "date":
        return pa.field(name, pa.date32())
    if kind == "timestamp":
        return pa.field(name, pa.timestamp("us"))  # Athena's session zone is UTC
    if kind == "decimal" and 0 < int(column.get("Precision") or 0) <= 38:
        return pa.field(name, pa.decimal128(int(column["Precision"]), int(column.get("Scale") or 0)))
    return pa.field(name, pa.string())


def _value(text: str, kind: pa.DataType) -> Any:
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_boolean(kind):
        return text.lower() == "true"
    if pa.types.is_date(kind):
        return date.fromisoformat(text)
    if pa.types.is_timestamp(kind):
        return datetime.fromisoformat(text)
    if pa.types.is_decimal(kind):
        return Decimal(text)
    return text


def to_batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Convert Athena rows (``{"Data": [{"VarCharValue": ...}]}``; no value is NULL) to a typed batch."""
    columns: list[list[Any]] = [[] for _ in schema]
    for row in rows:
        data = row.get("Data", [])
        for index, field in enumerate(schema):
            datum = data[index] if index < len(data) else {}
            text = datum.get("VarCharValue")
            columns[index].append(None if text is None else _value(text, field.type))
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class AthenaResults:
    """The pages of one finished query, fetched one at a time on the event loop from the stream's worker thread.

    Plays the sandbox's part for ``QueryStream``: ``interrupt`` stops the paging, ``close`` has nothing to free.
    """

    def __init__(
        self, athena: Any, query_id: str, first: dict[str, Any], *, page_rows: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.athena, self.query_id, self.page_rows, self.loop = athena, query_id, page_rows, loop
        result_set = first["ResultSet"]
        self.schema = pa.schema([arrow_field(c) for c in result_set["ResultSetMetadata"]["ColumnInfo"]])
        rows = result_set.get("Rows", [])
        # A SELECT's first page starts with the column names as a row.
        if rows and [d.get("VarCharValue") for d in rows[0].get("Data", [])] == self.schema.names:
            rows = rows[1:]
        self._first_rows = rows
        self._token: str | None = first.get("NextToken")
        self.pages = 1
        self.interrupted = False

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Yield the rows page by page; an AWS error ends the result as an ``error`` cut (an OSError to the stream)."""
        yield to_batch(self._first_rows, self.schema)
        while self._token and not self.interrupted:
            call = self.athena.get_query_results(
                QueryExecutionId=self.query_id, MaxResults=self.page_rows, NextToken=self._token
            )
            try:
                page = asyncio.run_coroutine_threadsafe(call, self.loop).result()
            except Exception as exc:
                raise OSError(f"reading Athena results: {exc}") from None
            self.pages += 1
            self._token = page.get("NextToken")
            yield to_batch(page["ResultSet"].get("Rows", []), self.schema)

    def reader(self) -> pa.RecordBatchReader:
        """Return the rows as a batch reader (pulled by the stream's worker thread)."""
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def interrupt(self) -> None:
        """Stop fetching pages."""
        self.interrupted = True

    def close(self) -> None:
        """Nothing to free: the results stay in the workgroup's output location, as Athena keeps them."""


async def _stop(athena: Any, query_id: str) -> None:
    try:
        await athena.stop_query_execution(QueryExecutionId=query_id)
    except Exception as exc:  # the query may have ended meanwhile; the answer is an error already
        log.warning("athena_stop_failed", query_id=query_id, error=str(exc))


async def wait_for_query(
    athena: Any, query_id: str, *, deadline: float, poll_s: float, gone: Disconnected | None
) -> None:
    """Poll until the query succeeds; a failure is a 400 with Athena's reason; time out or client gone stop it."""
    while True:
        execution = (await athena.get_query_execution(QueryExecutionId=query_id))["QueryExecution"]
        status = execution["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            return
        if state not in _RUNNING:
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or state
            raise QueryRefused(f"query failed: {reason}")
        if time.monotonic() >= deadline:
            await _stop(athena, query_id)
            raise QueryRefused("query exceeded the time limit (Athena query stopped)")
        if gone is not None and await gone():
            await _stop(athena, query_id)
            raise ClientGone("the client went away")
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


async def start_athena_query(
    *,
    settings: ReplaySettings,
    aws: AwsClients,
    request: QueryRequest,
    slots: QuerySlots,
    gone: Disconnected | None = None,
) -> QueryStream:
    """Send ``request``'s SELECT to Athena, wait for it and return its first page as the start of the stream."""
    sql = parse_check(request.sql)  # one SELECT; Athena's read-only role is the real guard
    release = slots.take()
    timeout = min(request.timeout_s or settings.query_timeout_s, settings.query_timeout_s)
    deadline = time.monotonic() + timeout
    max_rows = min(request.max_rows or settings.query_max_rows, settings.query_max_rows)
    page_rows = min(settings.athena_page_rows, max_rows + 1)  # +1: the header row of the first page
    try:
        athena = await aws.get("athena")
        query_id = (await athena.start_query_execution(**submission(settings, sql)))["QueryExecutionId"]
        log.info("athena_query_started", query_id=query_id, database=catalog_database(settings))
        await wait_for_query(athena, query_id, deadline=deadline, poll_s=settings.athena_poll_s, gone=gone)
        first = await athena.get_query_results(QueryExecutionId=query_id, MaxResults=page_rows)
        results = AthenaResults(athena, query_id, first, page_rows=page_rows, loop=asyncio.get_running_loop())
        json_columns = [
            c.get("Label") or c["Name"]
            for c in first["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
            if str(c.get("Type")).lower() == "json"
        ]
        stream = QueryStream(
            results,  # type: ignore[arg-type]  # the sandbox's part: interrupt() and close()
            results.reader(),
            json_columns=json_columns,
            format=request.format,
            limits=_Limits(max_rows=max_rows, max_bytes=settings.query_max_response_bytes, deadline=deadline),
            release=release,
        )
    except BaseException:
        release()
        raise
    try:
        await stream.prime(gone)
    except BaseException:
        stream.close()
        raise
    if stream.state.truncated == "error" and stream.state.rows == 0 and not stream.state.pending:
        error = stream.state.error
        stream.close()
        raise QueryRefused(f"query failed: {error}")
    return stream
