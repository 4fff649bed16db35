"""Hourly rotation of device logs to S3.

A closed hour's files go to ``<prefix>/<cloud_id>/YYYY/MM/DD/iseif-rainforest-<cloud_id>-<Y-M-D-H>.jl``
in the logs bucket. Each upload is verified (size and MD5 ETag from HEAD) before the local file is
removed; a failed upload leaves the file for the next run (the worker retries soon when the failure was
transient by ``shared.retry.is_transient``, else at the next scheduled run). When the key already exists (another
replica polled the device for part of the hour), the lines are merged rather than overwritten.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from services.poller.logwriter import HOUR_FORMAT
from shared.logging import get_logger
from shared.retry import MISSING_CODES, TransientError, is_transient

log = get_logger(__name__)

_FILE = re.compile(r"^iseif-rainforest-(?P<cloud_id>[A-Za-z0-9_-]+)-(?P<hour>\d{4}-\d{2}-\d{2}-\d{2})\.jl$")


@dataclass
class RotationReport:
    """What one rotation run did."""

    uploaded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_open_hours: list[str] = field(default_factory=list)
    transient: bool = False  # some failure is worth retrying soon (throttling, 5xx, connection trouble)


def s3_key(prefix: str, cloud_id: str, hour: datetime) -> str:
    """Return the S3 key of a device's hour file."""
    stamp = hour.strftime(HOUR_FORMAT)
    return f"{prefix}/{cloud_id}/{hour:%Y/%m/%d}/iseif-rainforest-{cloud_id}-{stamp}.jl"


def closed_hours(log_dir: Path, *, now: datetime, grace_s: float) -> tuple[list[tuple[datetime, Path]], list[str]]:
    """Return the hour directories whose hour ended at least ``grace_s`` ago (oldest first) and the open ones."""
    closed: list[tuple[datetime, Path]] = []
    still_open: list[str] = []
    if not log_dir.is_dir():
        return closed, still_open
    for directory in sorted(log_dir.iterdir()):
        try:
            hour = datetime.strptime(directory.name, HOUR_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            continue
        if hour + timedelta(hours=1, seconds=grace_s) <= now:
            closed.append((hour, directory))
        else:
            still_open.append(directory.name)
    return closed, still_open


def _merge(existing: bytes, ours: bytes) -> bytes:
    seen = set(existing.splitlines())
    extra = [line for line in ours.splitlines() if line not in seen]
    if not extra:
        return existing
    head = existing if existing.endswith(b"\n") or not existing else existing + b"\n"
    return head + b"\n".join(extra) + b"\n"


async def upload_verified(s3: Any, *, bucket: str, key: str, body: bytes) -> None:
    """Upload ``body`` (merged with an existing object) and confirm S3 holds exactly what was sent."""
    try:
        existing = await s3.get_object(Bucket=bucket, Key=key)
        async with existing["Body"] as stream:
            body = _merge(await stream.read(), body)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in MISSING_CODES:
            raise
    digest = hashlib.md5(body, usedforsecurity=False)
    await s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentMD5=base64.b64encode(digest.digest()).decode(),
        ContentType="application/x-ndjson",
    )
    head = await s3.head_object(Bucket=bucket, Key=key)
    if head["ContentLength"] != len(body) or head["ETag"].strip('"') != digest.hexdigest():
        raise TransientError(f"upload of {key} not confirmed: size or checksum differs")


async def rotate_closed_hours(
    *, s3: Any, bucket: str, log_dir: Path, key_prefix: str, now: datetime | None = None, grace_s: float = 60.0
) -> RotationReport:
    """Upload every closed hour's files, verify each, and delete only what was confirmed."""
    report = RotationReport()
    hours, report.skipped_open_hours = closed_hours(log_dir, now=now or datetime.now(UTC), grace_s=grace_s)
    for hour, directory in hours:
        for path in sorted(directory.iterdir()):
            match = _FILE.match(path.name)
            if match is None or match["hour"] != directory.name:
                continue
            key = s3_key(key_prefix, match["cloud_id"], hour)
            try:
                body = await asyncio.to_thread(path.read_bytes)
                await upload_verified(s3, bucket=bucket, key=key, body=body)
            except FileNotFoundError:
                continue  # another rotator on the same disk took it
            except Exception as exc:
                report.failed.append(key)
                report.transient = report.transient or is_transient(exc)
                log.warning("log_upload_failed", key=key, error=type(exc).__name__, transient=is_transient(exc))
                continue
            await asyncio.to_thread(path.unlink, missing_ok=True)
            report.uploaded.append(key)
        try:
            directory.rmdir()
        except OSError:
            pass  # not empty: something failed and stays for the next run
    log.info(
        "logs_rotated",
        uploaded=len(report.uploaded),
        failed=len(report.failed),
        open_hours=len(report.skipped_open_hours),
    )
    return report
