"""Hourly rotation: exactly the closed hours, the exact key format, deletion only after a confirmed upload."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from services.poller.logwriter import log_path
from services.poller.rotation import rotate_closed_hours
from services.poller.settings import PollerSettings
from shared.aws import AwsClients

NOW = datetime(2026, 11, 25, 14, 5, tzinfo=UTC)


@pytest.fixture
async def s3(make_settings: Callable[..., Any]) -> AsyncIterator[Any]:
    aws = AwsClients(make_settings(PollerSettings))
    yield await aws.get("s3")
    await aws.close()


def write(log_dir: Path, cloud_id: str, when: datetime, lines: list[bytes]) -> Path:
    path = log_path(log_dir, cloud_id, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


async def rotate(s3: Any, log_dir: Path) -> Any:
    return await rotate_closed_hours(s3=s3, bucket="hw-logs", log_dir=log_dir, key_prefix="rainforest-logs", now=NOW)


async def read_object(s3: Any, key: str) -> bytes:
    obj = await s3.get_object(Bucket="hw-logs", Key=key)
    async with obj["Body"] as stream:
        return await stream.read()


async def test_rotation_uploads_exactly_the_closed_hour_with_the_exact_key(s3: Any, tmp_path: Path) -> None:
    await s3.create_bucket(Bucket="hw-logs")
    closed = write(tmp_path, "002506", datetime(2026, 11, 25, 13, 59, tzinfo=UTC), [b'{"a": 1}', b'{"a": 2}'])
    older = write(tmp_path, "000001", datetime(2026, 11, 24, 23, 10, tzinfo=UTC), [b'{"b": 1}'])
    current = write(tmp_path, "002506", datetime(2026, 11, 25, 14, 1, tzinfo=UTC), [b'{"c": 1}'])

    report = await rotate_closed_hours(s3=s3, bucket="hw-logs", log_dir=tmp_path, key_prefix="rainforest-logs", now=NOW)

    assert sorted(report.uploaded) == [
        "rainforest-logs/000001/2026/11/24/iseif-rainforest-000001-2026-11-24-23.jl",
        "rainforest-logs/002506/2026/11/25/iseif-rainforest-002506-2026-11-25-13.jl",
    ]
    assert report.skipped_open_hours == ["2026-11-25-14"]
    key = "rainforest-logs/002506/2026/11/25/iseif-rainforest-002506-2026-11-25-13.jl"
    assert await read_object(s3, key) == b'{"a": 1}\n{"a": 2}\n'
    assert not closed.exists() and not older.exists() and not closed.parent.exists()
    assert current.exists(), "the open hour must stay on disk"
    listed = await s3.list_objects_v2(Bucket="hw-logs")
    assert len(listed["Contents"]) == 2


async def test_failed_upload_keeps_the_file_and_a_retry_delivers_it(s3: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "000042", datetime(2026, 11, 25, 12, 0, tzinfo=UTC), [b'{"x": 1}'])
    failed = await rotate(s3, tmp_path)
    assert failed.failed and not failed.uploaded
    assert path.exists(), "nothing may be deleted before its upload is confirmed"

    await s3.create_bucket(Bucket="hw-logs")
    retried = await rotate(s3, tmp_path)
    assert retried.uploaded == ["rainforest-logs/000042/2026/11/25/iseif-rainforest-000042-2026-11-25-12.jl"]
    assert not path.exists()


async def test_second_replica_upload_of_the_same_hour_merges_lines(s3: Any, tmp_path: Path) -> None:
    await s3.create_bucket(Bucket="hw-logs")
    hour = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
    key = "rainforest-logs/000007/2026/11/25/iseif-rainforest-000007-2026-11-25-11.jl"
    write(tmp_path / "a", "000007", hour, [b'{"t": 1}', b'{"t": 2}'])
    write(tmp_path / "b", "000007", hour, [b'{"t": 3}'])
    for log_dir in (tmp_path / "a", tmp_path / "b"):
        await rotate_closed_hours(s3=s3, bucket="hw-logs", log_dir=log_dir, key_prefix="rainforest-logs", now=NOW)
    assert await read_object(s3, key) == b'{"t": 1}\n{"t": 2}\n{"t": 3}\n'


class ThrottledS3:
    """An S3 client whose writes are throttled (a transient error by shared.retry)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    async def put_object(self, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")


async def test_only_transient_failures_ask_for_a_retry_soon(s3: Any, tmp_path: Path) -> None:
    write(tmp_path, "000043", datetime(2026, 11, 25, 12, 0, tzinfo=UTC), [b'{"x": 1}'])
    missing_bucket = await rotate(s3, tmp_path)
    assert missing_bucket.failed and not missing_bucket.transient

    await s3.create_bucket(Bucket="hw-logs")
    throttled = await rotate(ThrottledS3(s3), tmp_path)
    assert throttled.failed and throttled.transient
