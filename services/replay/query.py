"""Archive SQL: run one read-only SELECT and stream the rows as JSON lines or an Arrow IPC stream.

Bounds of one query (settings): its DuckDB's memory and spill (``query_memory_limit``, ``query_max_temp_size``),
its time (``query_timeout_s``, the archive listing and mirroring included), its rows (``query_max_rows``), the bytes
of its answer (``query_max_response_bytes``) and how many run at once in a process (``query_max_concurrent``; one
more is answered 429 with ``Retry-After``). A client that goes away stops its query.

A result cut short says so: JSON lines end with a last line ``{"_truncated": true, "reason": ..., "rows": N}``
and an Arrow stream ends with an empty record batch whose custom metadata holds ``truncated`` (the reason) and
``rows``; reasons are ``max_rows``, ``max_bytes``, ``timeout`` and ``error``. When the cut is known before the first
byte is sent, the ``X-Result-Truncated`` header carries the reason too. A query that fails or times out before any
row is sent is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from redis.asyncio import Redis

from services.replay.archive import TimeWindow
from services.replay.catalog import open_sandbox
from services.replay.models import QueryFormat, QueryRequest
from services.replay.sandbox import QueryRefused, Sandbox
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.errors import ApiError, TooManyRequestsError, UnprocessableError

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "arrow": "application/vnd.apache.arrow.stream"}
TRUNCATED_HEADER = "X-Result-Truncated"
# How often the start of a query looks whether its client is still there.
_DISCONNECT_POLL_S = 0.2

Disconnected = Callable[[], Awaitable[bool]]


class ClientGone(ApiError):
    """The client went away before the answer started (nobody reads this answer)."""

    status_code = 499
    code = "client_closed_request"


class QuerySlots:
    """At most ``limit`` queries at once in this process; one more is refused at once (429), never queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self) -> Callable[[], None]:
        """Take a slot or raise TooManyRequestsError; return the (idempotent) release."""
        if self.in_use >= self.limit:
            raise TooManyRequestsError(f"{self.limit} queries are running: retry shortly", headers={"Retry-After": "1"})
        self.in_use += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_use -= 1

        return release


def check_window_width(settings: ReplaySettings, start: Any, end: Any) -> None:
    """Refuse (422) a start..end window wider than ``query_max_window_days``."""
    if start is not None and end is not None and (end - start).total_seconds() > settings.query_max_window_days * 86400:
        raise UnprocessableError(
            f"the start..end window is wider than {settings.query_max_window_days} days",
            details=[{"field": "end", "reason": "window_too_wide"}],
        )


@dataclass
class _Limits:
    max_rows: int
    max_bytes: int
    deadline: float


@dataclass
class _Progress:
    rows: int = 0
    bytes: int = 0
    truncated: str | None = None
    error: str | None = None
    done: bool = False
    pending: list[pa.RecordBatch] = field(default_factory=list)


class QueryStream:
    """A started query whose chunks are produced in a worker thread (DuckDB calls block), one at a time."""

    def __init__(
        self,
        sandbox: Sandbox,
        reader: pa.RecordBatchReader,
        *,
        json_columns: list[str],
        format: QueryFormat,
        limits: _Limits,
        release: Callable[[], None],
    ) -> None:
        self.sandbox = sandbox
        self.reader = reader
        self.schema = reader.schema
        self.json_columns = json_columns
        self.format = format
        self.limits = limits
        self.state = _Progress()
        self._release = release
        self._closed = False
        self._arrow: Iterator[bytes] | None = None
        self._first: bytes = b""

    @property
    def media_type(self) -> str:
        """Return the media type of the chunks."""
        return MEDIA_TYPES[self.format]

    @property
    def headers(self) -> dict[str, str]:
        """Return headers known before the first byte (the truncation, when the first chunk already ends it)."""
        return {TRUNCATED_HEADER: self.state.truncated} if self.state.truncated else {}

    # -- producing (worker thread) ----------------------------------------------------------------------------

    def _next_batch(self) -> pa.RecordBatch | None:
        """Return the next non-empty batch, or None at the end; a limit reached marks the result truncated."""
        state, limits = self.state, self.limits
        while True:
            if state.pending:
                return state.pending.pop(0)
            if time.monotonic() >= limits.deadline:
                state.truncated = "timeout"
                return None
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                return None
            except duckdb.InterruptException:
                state.truncated = "timeout"
                return None
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                # Through the Arrow reader an interrupt (the time limit's timer) arrives as an OSError.
                interrupted = "INTERRUPT" in str(exc).upper() or time.monotonic() >= limits.deadline
                state.truncated, state.error = ("timeout", None) if interrupted else ("error", str(exc)[:500])
                return None
            if batch.num_rows:
                return batch

    def _rows_batch(self) -> pa.RecordBatch | None:
        """Return the next batch within ``max_rows`` (peeking one batch further to tell a cut from an end)."""
        state, limits = self.state, self.limits
        if state.rows >= limits.max_rows:
            if self._next_batch() is not None:
                state.truncated = "max_rows"
            return None
        batch = self._next_batch()
        if batch is None:
            return None
        room = limits.max_rows - state.rows
        if batch.num_rows > room:
            state.pending.insert(0, batch.slice(room))
            batch = batch.slice(0, room)
        return batch

    def produce(self) -> bytes | None:
        """Return the next chunk (the trailer last when the result was cut), or None when all was sent."""
        if self.state.done:
            return None
        chunk = self._arrow_chunk() if self.format == "arrow" else self._jsonl_chunk()
        return chunk

    def _jsonl_chunk(self) -> bytes:
        state, limits = self.state, self.limits
        batch = self._rows_batch() if state.truncated is None else None
        chunk = bytearray()
        if batch is not None:
            for row in batch.to_pylist():
                for name in self.json_columns:
                    if row.get(name) is not None:
                        row[name] = orjson.loads(row[name])
                line = orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
                if state.bytes + len(line) > limits.max_bytes:
                    state.truncated = "max_bytes"
                    break
                chunk += line
                state.bytes += len(line)
                state.rows += 1
        if state.truncated is None and state.rows >= limits.max_rows:
            # Tell a cut from an end now, so the first chunk can still carry the header.
            self._rows_batch()
            batch = None
        if batch is None or state.truncated is not None:
            state.done = True
            if state.truncated is not None:
                chunk += orjson.dumps({"_truncated": True, "reason": state.truncated, "rows": state.rows}) + b"\n"
        return bytes(chunk)

    def _arrow_chunk(self) -> bytes:
        if self._arrow is None:
            self._arrow = self._arrow_chunks()
        chunk = next(self._arrow, None)
        if chunk is None:
            self.state.done = True
            return b""
        return chunk

    def _arrow_chunks(self) -> Iterator[bytes]:
        state, limits = self.state, self.limits
        written: list[bytes] = []

        class _Collector(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, data: bytes) -> int:  # type: ignore[override]
                written.append(bytes(data))
                return len(data)

        def drain() -> bytes:
            data = b"".join(written)
            written.clear()
            return data

        writer = pa.ipc.new_stream(pa.PythonFile(_Collector(), mode="w"), self.schema)
        while state.truncated is None:
            batch = self._rows_batch()
            if batch is None:
                break
            # Fit the batch into the byte cap (halving it), then write it.
            while batch.num_rows and state.bytes + pa.ipc.get_record_batch_size(batch) > limits.max_bytes:
                state.truncated = "max_bytes"
                batch = batch.slice(0, batch.num_rows // 2)
            if batch.num_rows:
                writer.write_batch(batch)
                state.rows += batch.num_rows
                if state.truncated is None and state.rows >= limits.max_rows:
                    self._rows_batch()  # a cut or the end: either way this batch goes out with the stream's end
                    break
                data = drain()
                state.bytes += len(data)
                yield data
        if state.truncated is not None:
            empty = pa.RecordBatch.from_pylist([], schema=self.schema)
            writer.write_batch(empty, custom_metadata={"truncated": state.truncated, "rows": str(state.rows)})
        writer.close()
        yield drain()

    # -- streaming (event loop) -------------------------------------------------------------------------------

    async def prime(self, gone: Disconnected | None) -> None:
        """Produce the first chunk before the answer starts, so early failures and cuts can still be said."""
        first = await _watched(asyncio.to_thread(self.produce), self, gone)
        self._first = first or b""

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the chunks; closing early (the client went away) interrupts the query and frees its slot."""
        pending: asyncio.Future[bytes | None] | None = None
        try:
            if self._first:
                yield self._first
            while True:
                pending = asyncio.ensure_future(asyncio.to_thread(self.produce))
                chunk = await pending
                pending = None
                if chunk is None:
                    break
                if chunk:
                    yield chunk
        finally:
            self.close(pending)

    def close(self, running: asyncio.Future[Any] | Future[Any] | None = None) -> None:
        """Stop the query and free its resources now, or when its running chunk returns."""
        if self._closed:
            return
        self._closed = True
        if running is None or running.done():
            self._dispose()
            return
        self.sandbox.interrupt()
        running.add_done_callback(lambda _: self._dispose())

    def _dispose(self) -> None:
        try:
            self.sandbox.close()
        finally:
            self._release()


async def _watched(work: Awaitable[Any], stream_or_sandbox: Any, gone: Disconnected | None) -> Any:
    """Await ``work`` while looking whether the client left; then interrupt, wait for the work, raise ClientGone."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_S)
        except asyncio.CancelledError:  # the caller's time limit: the work stops with it
            task.cancel()
            raise
        if done:
            return task.result()
        if gone is not None and await gone():
            sandbox = getattr(stream_or_sandbox, "sandbox", stream_or_sandbox)
            if isinstance(sandbox, Sandbox):
                sandbox.interrupt()
            else:
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise ClientGone("the client went away")


async def start_query(
    *,
    settings: ReplaySettings,
    aws: AwsClients,
    request: QueryRequest,
    slots: QuerySlots,
    gone: Disconnected | None = None,
    redis: Redis | None = None,
) -> QueryStream:
    """Check and start ``request``'s SQL within the process's query slots; refusals raise before any row is sent."""
    if settings.query_engine == "athena":
        from services.replay.athena import start_athena_query  # here: athena.py builds on this module

        return await start_athena_query(settings=settings, aws=aws, request=request, slots=slots, gone=gone)
    check_window_width(settings, request.start, request.end)
    release = slots.take()
    timeout = min(request.timeout_s or settings.query_timeout_s, settings.query_timeout_s)
    deadline = time.monotonic() + timeout
    sandbox: Sandbox | None = None
    try:
        window = TimeWindow(request.start, request.end) if (request.start or request.end) else None
        # Listing and mirroring the archive count inside the query's time.
        try:
            async with asyncio.timeout(timeout):
                sandbox = await _watched(
                    open_sandbox(
                        settings=settings, aws=aws, sql=request.sql, sources=request.sources, window=window, redis=redis
                    ),
                    None,
                    gone,
                )
        except TimeoutError:
            raise QueryRefused(f"query exceeded the time limit of {timeout:g}s (reading the archive)") from None
        sql = sandbox.check_select(request.sql)
        max_rows = min(request.max_rows or settings.query_max_rows, settings.query_max_rows)
        remaining = max(0.001, deadline - time.monotonic())
        started = sandbox
        reader, json_columns = await _watched(
            asyncio.to_thread(started.reader, sql, timeout_s=remaining), started, gone
        )
        stream = QueryStream(
            started,
            reader,
            json_columns=json_columns,
            format=request.format,
            limits=_Limits(max_rows=max_rows, max_bytes=settings.query_max_response_bytes, deadline=deadline),
            release=release,
        )
    except BaseException:
        if sandbox is not None:
            sandbox.close()
        release()
        raise
    try:
        await stream.prime(gone)
    except BaseException:
        stream.close()
        raise
    if stream.state.truncated in ("timeout", "error") and stream.state.rows == 0 and not stream.state.pending:
        # Nothing was sent yet: say it with a status, not a trailer.
        reason = stream.state.truncated
        stream.close()
        if reason == "timeout":
            raise QueryRefused(f"query exceeded the time limit of {timeout:g}s")
        raise QueryRefused(f"query failed: {stream.state.error}")
    return stream
