"""Small S3 helpers for the loader: split s3:// URLs, read objects, download files.

Which failures are worth retrying is decided by ``shared.retry.is_transient``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


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
