"""Small S3 helpers for the loader: read objects, download files, and tell transient errors apart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

# S3 eventual consistency (an object listed in a manifest not readable yet) counts as transient, as do 5xx.
TRANSIENT_CODES = {
    "NoSuchKey",
    "404",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "500",
    "503",
}


class TransientError(RuntimeError):
    """A failure worth retrying soon (S3 not answering, an object not there yet)."""


def is_transient(exc: BaseException) -> bool:
    """Return whether ``exc`` is a transient AWS/network error."""
    if isinstance(exc, TransientError | EndpointConnectionError | ConnectionClosedError | ReadTimeoutError):
        return True
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return isinstance(exc, ConnectionError | TimeoutError)


def split_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url}")
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key


async def read_object(s3: Any, bucket: str, key: str) -> bytes:
    """Return an object's bytes."""
    response = await s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read()


async def download(s3: Any, bucket: str, key: str, target: Path, chunk_size: int = 8 << 20) -> Path:
    """Stream an object to ``target`` (file writes run in a thread)."""
    response = await s3.get_object(Bucket=bucket, Key=key)
    handle = await asyncio.to_thread(open, target, "wb")
    try:
        async with response["Body"] as body:
            while chunk := await body.read(chunk_size):
                await asyncio.to_thread(handle.write, chunk)
    finally:
        await asyncio.to_thread(handle.close)
    return target
