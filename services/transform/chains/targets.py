"""Targets in the chains bucket: ``chains/<type>/<chain>/<Task>/<md5>/`` with ``params.json``, ``out.<ext>``,
``log.txt`` and the ``_SUCCESS`` marker, written last: a target is complete exactly when its marker exists."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from services.transform.chains.base import TaskRef
from services.transform.settings import TransformSettings

SUCCESS = "_SUCCESS"


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


async def is_complete(s3: Any, settings: TransformSettings, prefix: str) -> bool:
    """Return True when the target's ``_SUCCESS`` marker exists."""
    try:
        await s3.head_object(Bucket=settings.bucket("chains"), Key=f"{prefix}{SUCCESS}")
    except ClientError as exc:
        if _missing(exc):
            return False
        raise
    return True


async def read_text(s3: Any, settings: TransformSettings, key: str) -> str | None:
    """Return an object of the chains bucket as text, or None when it does not exist."""
    try:
        response = await s3.get_object(Bucket=settings.bucket("chains"), Key=key)
    except ClientError as exc:
        if _missing(exc):
            return None
        raise
    async with response["Body"] as body:
        return (await body.read()).decode(errors="replace")


async def read_output(s3: Any, settings: TransformSettings, ref: TaskRef, extension: str) -> bytes:
    """Return a complete target's ``out.<ext>``."""
    response = await s3.get_object(Bucket=settings.bucket("chains"), Key=f"{ref.prefix}out.{extension}")
    async with response["Body"] as body:
        return await body.read()


async def write_log(s3: Any, settings: TransformSettings, ref: TaskRef, text: str) -> None:
    """Write the target's ``log.txt`` and ``params.json`` (also for a failed attempt)."""
    bucket = settings.bucket("chains")
    await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}params.json", Body=ref.params_json.encode())
    await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}log.txt", Body=text.encode())


async def write_target(
    s3: Any, settings: TransformSettings, ref: TaskRef, extension: str, output: bytes, log_text: str
) -> str:
    """Write a finished target: params, output, log, then ``_SUCCESS`` last; return the output key."""
    bucket = settings.bucket("chains")
    key = f"{ref.prefix}out.{extension}"
    await s3.put_object(Bucket=bucket, Key=key, Body=output)
    await write_log(s3, settings, ref, log_text)
    await s3.put_object(Bucket=bucket, Key=f"{ref.prefix}{SUCCESS}", Body=b"")  # last: complete from here on
    return key


async def output_key(s3: Any, settings: TransformSettings, prefix: str) -> str | None:
    """Return the key of a complete target's ``out.*``, else None."""
    if not await is_complete(s3, settings, prefix):
        return None
    listing = await s3.list_objects_v2(Bucket=settings.bucket("chains"), Prefix=f"{prefix}out.")
    contents = listing.get("Contents", [])
    return contents[0]["Key"] if contents else None


async def presign(s3: Any, settings: TransformSettings, key: str, ttl_s: int) -> str:
    """Return a presigned GET URL of an object in the chains bucket."""
    return await s3.generate_presigned_url(
        "get_object", Params={"Bucket": settings.bucket("chains"), "Key": key}, ExpiresIn=ttl_s
    )
