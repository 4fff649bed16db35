"""The two sinks of a shipped segment: the gzip JSON-lines archive in S3 and the Kinesis ``events`` stream."""

from __future__ import annotations

import asyncio
import functools
import gzip
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from services.ingest.settings import IngestSettings
from shared.aws import client_kwargs
from shared.kinesis_put import (
    Entry,
    KinesisPutClient,
    PutRecords,
    PutRecordsError,
    botocore_put_records,
    exponential_backoff,
    put_with_retry,
)

KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BYTES = 1024 * 1024
_COUNT_IN_KEY = re.compile(r"-n(\d+)\.json\.gz$")


class SinkError(Exception):
    """A sink refused or could not be reached; the segment stays in the spool and is retried."""


def events_in_key(key: str) -> int:
    """Return the event count a ``shared.contracts.raw_object_key`` carries (0 when the key is not one)."""
    match = _COUNT_IN_KEY.search(key)
    return int(match.group(1)) if match else 0


def gzip_lines(lines: list[bytes]) -> bytes:
    """Gzip JSON lines deterministically (mtime 0), one record per line."""
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)


async def put_archive_object(s3: Any, *, bucket: str, key: str, lines: list[bytes]) -> None:
    """Write one gzip JSON-lines object."""
    body = await asyncio.to_thread(gzip_lines, lines)
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")


def kinesis_chunks(entries: list[Entry]) -> Iterator[list[Entry]]:
    """Split (data, partition key) entries into PutRecords calls of at most 500 records and 1 MiB."""
    chunk: list[Entry] = []
    size = 0
    for data, key in entries:
        entry_size = len(data) + len(key.encode())
        if chunk and (len(chunk) >= KINESIS_MAX_RECORDS or size + entry_size > KINESIS_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((data, key))
        size += entry_size
    if chunk:
        yield chunk


async def put_stream_records(
    put: PutRecords,
    *,
    stream: str,
    entries: list[Entry],
    max_attempts: int,
    backoff_s: float = 0.2,
    concurrency: int = 1,
) -> int:
    """Put every entry on the stream (``concurrency`` calls at once), retrying only failed records.

    Return the number of PutRecords calls made; raise :class:`SinkError` when records still fail.
    """
    gate = asyncio.Semaphore(concurrency)
    backoff = exponential_backoff(backoff_s)

    async def _gated(chunk: list[Entry]) -> int:
        async with gate:
            try:
                result = await put_with_retry(put, chunk, stream=stream, max_attempts=max_attempts, backoff=backoff)
            except PutRecordsError as exc:
                raise SinkError(f"PutRecords failed {exc.attempts} times: {exc}") from exc
        if result.given_up:
            raise SinkError(f"{len(result.given_up)} records still failing after {max_attempts} PutRecords attempts")
        return result.calls

    calls = await asyncio.gather(*(_gated(chunk) for chunk in kinesis_chunks(entries)))
    return sum(calls)


class SinkClients:
    """AWS clients for the shipper: few botocore retries, since the shipper keeps a segment and retries it itself."""

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings
        self._session = get_session()
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._lean_kinesis: KinesisPutClient | None = None

    async def get(self, service: str) -> Any:
        """Return the open client for ``service``."""
        async with self._lock:
            client = self._clients.get(service)
            if client is None:
                kwargs = client_kwargs(self._settings, service)
                kwargs["config"] = kwargs["config"].merge(
                    AioConfig(
                        retries={"max_attempts": 2, "mode": "standard"},
                        connect_timeout=3,
                        read_timeout=20,
                        # The shipper builds every request itself; skipping botocore's per-record checks saves CPU.
                        parameter_validation=False,
                    )
                )
                client = await self._stack.enter_async_context(self._session.create_client(service, **kwargs))
                self._clients[service] = client
            return client

    async def put_records(self, stream: str) -> PutRecords:
        """Return the PutRecords call for ``stream``: the lean client, or botocore's when configured so."""
        if not self._settings.kinesis_lean_put:
            return botocore_put_records(await self.get("kinesis"), stream)
        if self._lean_kinesis is None:
            self._lean_kinesis = KinesisPutClient(self._settings, self._session)
        return functools.partial(self._lean_kinesis.put_records, stream)

    async def close(self) -> None:
        """Close the clients."""
        await self._stack.aclose()
        self._clients.clear()
        if self._lean_kinesis is not None:
            await self._lean_kinesis.close()
            self._lean_kinesis = None
