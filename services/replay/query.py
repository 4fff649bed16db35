"""Archive SQL: run one read-only SELECT and stream the rows as JSON lines or an Arrow IPC stream."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import orjson
import pyarrow as pa

from services.replay.archive import TimeWindow
from services.replay.catalog import open_sandbox
from services.replay.models import QueryFormat, QueryRequest
from services.replay.sandbox import Sandbox
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "arrow": "application/vnd.apache.arrow.stream"}


class QueryStream:
    """A started query whose rows are produced lazily (iterate in a thread: DuckDB calls block)."""

    def __init__(
        self,
        sandbox: Sandbox,
        batches: Iterator[pa.RecordBatch],
        *,
        schema: pa.Schema,
        json_columns: list[str],
        format: QueryFormat,
    ) -> None:
        self.sandbox = sandbox
        self.batches = batches
        self.schema = schema
        self.json_columns = json_columns
        self.format = format

    @property
    def media_type(self) -> str:
        """Return the media type of the chunks."""
        return MEDIA_TYPES[self.format]

    def chunks(self) -> Iterator[bytes]:
        """Yield the rows in the requested format."""
        return self.arrow() if self.format == "arrow" else self.jsonl()

    def jsonl(self) -> Iterator[bytes]:
        """Yield JSON lines, JSON-typed columns inlined as JSON."""
        try:
            for batch in self.batches:
                chunk = bytearray()
                for row in batch.to_pylist():
                    for name in self.json_columns:
                        if row.get(name) is not None:
                            row[name] = orjson.loads(row[name])
                    chunk += orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS)
                    chunk += b"\n"
                yield bytes(chunk)
        finally:
            self.sandbox.close()

    def arrow(self) -> Iterator[bytes]:
        """Yield an Arrow IPC stream, one chunk per record batch."""
        chunks: list[bytes] = []

        class _Collector(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, data: bytes) -> int:  # type: ignore[override]
                chunks.append(bytes(data))
                return len(data)

        def _drain() -> bytes:
            out = b"".join(chunks)
            chunks.clear()
            return out

        try:
            sink = pa.PythonFile(_Collector(), mode="w")
            with pa.ipc.new_stream(sink, self.schema) as writer:
                for batch in self.batches:
                    writer.write_batch(batch)
                    yield _drain()
            yield _drain()
        finally:
            self.sandbox.close()


async def start_query(*, settings: ReplaySettings, aws: AwsClients, request: QueryRequest) -> QueryStream:
    """Check and start ``request``'s SQL; refusals raise before any row is sent."""
    window = TimeWindow(request.start, request.end) if (request.start or request.end) else None
    sandbox = await open_sandbox(settings=settings, aws=aws, sql=request.sql, sources=request.sources, window=window)
    try:
        sql = sandbox.check_select(request.sql)
        max_rows = min(request.max_rows or settings.query_max_rows, settings.query_max_rows)
        timeout = min(request.timeout_s or settings.query_timeout_s, settings.query_timeout_s)

        def _start() -> tuple[Iterator[pa.RecordBatch], pa.Schema, list[str]]:
            reader, json_columns = sandbox.reader(sql, timeout_s=timeout)
            return sandbox.batches_from(reader, max_rows=max_rows), reader.schema, json_columns

        batches, schema, json_columns = await asyncio.to_thread(_start)
    except BaseException:
        sandbox.close()
        raise
    return QueryStream(sandbox, batches, schema=schema, json_columns=json_columns, format=request.format)
