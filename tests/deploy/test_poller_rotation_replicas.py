"""Poller replicas each rotate their own hourly logs, and upload what they hold when they stop (a rollout).

Each replica has its own log directory (an emptyDir per pod). Two replicas run the worker's real start-up and
shutdown hooks against Redis and the emulator; every hour of every device must reach S3 exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.poller import worker
from services.poller.logwriter import HOUR_FORMAT
from services.poller.settings import PollerSettings
from shared.aws import AwsClients
from shared.bootstrap import ensure_buckets
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(120)


def _write_hour(log_dir: Path, cloud_id: str, hour: datetime, lines: list[str]) -> None:
    stamp = hour.strftime(HOUR_FORMAT)
    directory = log_dir / stamp
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"iseif-rainforest-{cloud_id}-{stamp}.jl").write_text("".join(line + "\n" for line in lines))


async def _objects(aws: AwsClients, bucket: str) -> dict[str, list[str]]:
    s3 = await aws.get("s3")
    listing = await s3.list_objects_v2(Bucket=bucket)
    out = {}
    for item in listing.get("Contents", []):
        body = await (await s3.get_object(Bucket=bucket, Key=item["Key"]))["Body"].read()
        out[item["Key"]] = body.decode().splitlines()
    return out


def test_rotation_is_not_a_cron_on_the_shared_queue() -> None:
    options = worker.worker_options(PollerSettings(environment="test"))
    # One cron on a queue every replica shares runs on whichever replica takes it: never the others' files.
    assert not options.get("cron_jobs")


async def test_two_replicas_each_rotate_their_hours_and_upload_the_rest_on_shutdown(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    closed, current = now - timedelta(hours=2), now
    replicas = [make_settings(PollerSettings, data_dir=tmp_path / f"pod-{n}", rotation_grace_s=0.0) for n in range(2)]
    async with AwsClients(replicas[0]) as aws:
        await ensure_buckets(await aws.get("s3"), replicas[0])
        bucket = replicas[0].bucket("logs")
        expected: dict[str, list[str]] = {}
        for n, settings in enumerate(replicas):
            for hour in (closed, current):
                cloud_id = f"00{n}abc"
                lines = [f'{{"replica": {n}, "hour": "{hour:%H}", "i": {i}}}' for i in range(3)]
                _write_hour(settings.logs_path, cloud_id, hour, lines)
                prefix = settings.logs_key_prefix
                key = f"{prefix}/{cloud_id}/{hour:%Y/%m/%d}/iseif-rainforest-{cloud_id}-{hour.strftime(HOUR_FORMAT)}.jl"
                expected[key] = lines
        contexts = [{"settings": settings, "rotate_every_s": 0.2} for settings in replicas]
        for ctx in contexts:
            await worker.startup(ctx)
        try:
            # Each replica's own periodic pass uploads its closed hour, without any shared cron job.
            async def _closed_hours_uploaded() -> bool:
                keys = set(await _objects(aws, bucket))
                return all(closed.strftime(HOUR_FORMAT) in key for key in keys) and len(keys) == 2

            await wait_until(_closed_hours_uploaded, timeout=30, message="both replicas rotated their closed hour")
        finally:
            # A rollout: both replicas stop; each uploads the (still open) hour it holds.
            for ctx in contexts:
                await worker.shutdown(ctx)
        objects = await _objects(aws, bucket)
    assert objects == expected  # every hour once, every line once
    for settings in replicas:
        assert not list(settings.logs_path.rglob("*.jl")), "nothing is left behind on the pod's disk"
