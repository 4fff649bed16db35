"""The two sinks of a shipped segment: the gzip JSON-lines archive in S3 and the Kinesis ``events`` stream."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from shared.aws import client_kwargs
from shared.logging import get_logger
from shared.settings import HeadwaterSettings

log = get_logger(__name__)

KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BYTES = 1024 * 1024
_COUNT_IN_KEY = re.compile(r"-n(\d+)\.json\.gz$")


class SinkError(Exception):
    """A sink refused or could not be reached; the segment stays in the spool and is retried."""


def archive_key(source: str, dt: str, hour: str, segment_name: str, count: int) -> str:
    """Return the deterministic archive key of one partition of one segment (count is part of the name)."""
    return f"{source}/dt={dt}/hour={hour}/{segment_name}-n{count}.json.gz"


def events_in_key(key: str) -> int:
    """Return the event count encoded in an archive key (0 when the key is not one of ours)."""
    match = _COUNT_IN_KEY.search(key)
    return int(match.group(1)) if match else 0


def gzip_lines(lines: list[bytes]) -> bytes:
    """Gzip JSON lines deterministically (mtime 0), one record per line."""
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0)


async def put_archive_object(s3: Any, *, bucket: str, key: str, lines: list[bytes]) -> None:
    """Write one gzip JSON-lines object."""
    body = await asyncio.to_thread(gzip_lines, lines)
    await s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson")


def kinesis_chunks(entries: list[tuple[bytes, str]]) -> Iterator[list[tuple[bytes, str]]]:
    """Split (data, partition key) entries into PutRecords calls of at most 500 records and 1 MiB."""
    chunk: list[tuple[bytes, str]] = []
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
    kinesis: Any,
    *,
    stream: str,
    entries: list[tuple[bytes, str]],
    max_attempts: int,
    backoff_s: float = 0.2,
    concurrency: int = 1,
) -> int:
    """Put every entry on the stream (``concurrency`` calls at once), retrying only failed records.

    Return the number of PutRecords calls made.
    """
    gate = asyncio.Semaphore(concurrency)

    async def _gated(chunk: list[tuple[bytes, str]]) -> int:
        async with gate:
            return await _put_chunk(kinesis, stream=stream, chunk=chunk, max_attempts=max_attempts, backoff_s=backoff_s)

    calls = await asyncio.gather(*(_gated(chunk) for chunk in kinesis_chunks(entries)))
    return sum(calls)


async def _put_chunk(
    kinesis: Any, *, stream: str, chunk: list[tuple[bytes, str]], max_attempts: int, backoff_s: float
) -> int:
    remaining = chunk
    for attempt in range(max_attempts):
        response = await kinesis.put_records(
            StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in remaining]
        )
        if not response.get("FailedRecordCount"):
            return attempt + 1
        remaining = [
            entry for entry, result in zip(remaining, response["Records"], strict=True) if result.get("ErrorCode")
        ]
        log.warning("kinesis_partial_failure", stream=stream, failed=len(remaining), attempt=attempt + 1)
        await asyncio.sleep(backoff_s * 2**attempt)
    raise SinkError(f"{len(remaining)} records still failing after {max_attempts} PutRecords attempts")


class SinkClients:
    """AWS clients for the shipper: few botocore retries, since the shipper keeps a segment and retries it itself."""

    def __init__(self, settings: HeadwaterSettings) -> None:
        self._settings = settings
        self._session = get_session()
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

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

    async def close(self) -> None:
        """Close the clients."""
        await self._stack.aclose()
        self._clients.clear()
