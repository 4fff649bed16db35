"""The spool: one locked slot per process, torn tails cut on recovery, orphaned slots adopted and shipped."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from services.ingest.markers import DayMarkers
from services.ingest.settings import IngestSettings
from services.ingest.shipper import Shipper
from services.ingest.sinks import SinkClients
from services.ingest.spool import Slot, Spool, SpoolFullError, read_segment_lines
from shared.aws import AwsClients
from tests.ingest.conftest import archived_records


def _spool(settings: IngestSettings) -> Spool:
    return Spool(settings.spool_dir, max_bytes=10**7, segment_max_events=1000, segment_max_bytes=10**7)


def _line(event_id: str) -> bytes:
    record = {
        "event_id": event_id,
        "type": "impression",
        "source": "beacon",
        "event_time": "2026-11-24T10:00:00.000Z",
        "received_at": "2026-11-24T10:00:01.000Z",
        "client_ip_hash": None,
        "ad_id": "a",
        "campaign_id": None,
        "placement": None,
        "user_id": None,
        "properties": {},
    }
    return orjson.dumps(record) + b"\n"


async def test_two_processes_never_share_a_slot(ingest_settings: IngestSettings) -> None:
    first, second = _spool(ingest_settings), _spool(ingest_settings)
    await first.open()
    await second.open()
    try:
        assert first.slot is not None and second.slot is not None
        assert (first.slot.path.name, second.slot.path.name) == ("slot-0", "slot-1")
    finally:
        for spool in (first, second):
            await spool.close()
            spool.release()


def test_recovery_cuts_a_torn_last_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    slot = Slot(tmp_path / "slot-0")
    assert slot.try_lock()
    (slot.path / "0001-00000000.open").write_bytes(_line("a") + _line("b") + _line("c")[:20])
    [segment] = slot.recover()
    slot.release()
    assert segment.path.suffix == ".seg" and segment.events == 2
    assert segment.path.read_bytes() == _line("a") + _line("b")
    assert segment.days == {("beacon", "2026-11-24")}


async def test_a_dead_process_slot_is_adopted_and_shipped(
    ingest_settings: IngestSettings, redis: Redis, aws: AwsClients
) -> None:
    dead, alive = _spool(ingest_settings), _spool(ingest_settings)
    await dead.open()
    await alive.open()
    await dead.append(_line("orphan-1") + _line("orphan-2"), 2, {("beacon", "2026-11-24")})
    assert dead.slot is not None
    dead.slot.release()  # the owner dies without shipping: its lock goes with it
    assert dead._committer is not None
    dead._committer.cancel()

    sinks = SinkClients(ingest_settings)
    markers = DayMarkers(redis=redis, prefix="hw", bucket="hw-raw", grace_s=300, instance_id=alive.run_id)
    shipper = Shipper(settings=ingest_settings, spool=alive, aws=sinks, markers=markers)
    try:
        await shipper.drain_orphans()
    finally:
        await sinks.close()
        await alive.close()
        alive.release()
    records = await archived_records(aws, ingest_settings)
    assert sorted(record["event_id"] for record in records) == ["orphan-1", "orphan-2"]
    assert not list((ingest_settings.spool_dir / "slot-0").glob("*.seg"))
    assert not list((ingest_settings.spool_dir / "slot-0").glob("*.open"))


async def test_a_day_still_receiving_events_gets_its_marker_only_once_quiet(redis: Redis, bootstrapped: Any) -> None:
    from datetime import timedelta

    from shared.aws import AwsClients
    from shared.messages import utc_now

    markers = DayMarkers(redis=redis, prefix="hw", bucket="hw-raw", grace_s=300, instance_id="me", quiet_s=60)
    day = ("beacon", "2026-01-05")
    await markers.note_shipped({day})
    async with AwsClients(bootstrapped) as aws:
        s3 = await aws.get("s3")
        assert await markers.write_due(s3, local_pending=set()) == []
        later = utc_now() + timedelta(seconds=61)
        assert await markers.write_due(s3, local_pending=set(), now=later) == ["beacon/dt=2026-01-05/_COMPLETE"]
        assert await redis.hgetall("hw:ingest:open-days-shipped-at") == {}


@contextlib.contextmanager
def _tiny_disk(path: Path, size: str = "64k") -> Iterator[Path]:
    """Mount a small tmpfs at ``path`` (a real file system that fills up); skip where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_refuses_without_tearing_the_segment(tmp_path: Path) -> None:
    # Found by the chaos scenario "disk full for the ingest spool": a short write raised a bare OSError (a 500)
    # and left a torn line that the next acknowledged group was glued onto.
    with _tiny_disk(tmp_path / "disk") as disk:
        spool = Spool(disk / "spool", max_bytes=10**7, segment_max_events=1000, segment_max_bytes=10**7)
        await spool.open()
        try:
            await spool.append(_line("kept-1"), 1, {("beacon", "2026-11-24")})
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                with contextlib.suppress(OSError):
                    while os.write(fd, b"x" * 512):
                        pass
            finally:
                os.close(fd)
            big = b"".join(_line(f"refused-{n}") for n in range(40))
            with pytest.raises(SpoolFullError):
                await spool.append(big, 40, {("beacon", "2026-11-24")})
            filler.unlink()
            await spool.append(_line("kept-2"), 1, {("beacon", "2026-11-24")})
        finally:
            await spool.close()
            spool.release()
        [segment] = spool.sealed()
        lines = read_segment_lines(segment.path)
        assert [orjson.loads(line)["event_id"] for line in lines] == ["kept-1", "kept-2"]
        assert segment.events == 2 and segment.size == segment.path.stat().st_size


async def test_a_day_shipped_just_before_redis_lost_its_data_still_gets_its_marker(
    redis: Redis, bootstrapped: Any
) -> None:
    # Found by the chaos scenario "Redis flushed": the open-days hash was the only record that a day awaited its
    # marker, so a FLUSHALL between the last ship and the marker left the day unmarked, and never loaded.
    from datetime import timedelta

    from shared.aws import AwsClients
    from shared.contracts import raw_object_key
    from shared.messages import utc_now

    markers = DayMarkers(redis=redis, prefix="hw", bucket="hw-raw", grace_s=300, instance_id="me", quiet_s=5)
    async with AwsClients(bootstrapped) as aws:
        s3 = await aws.get("s3")
        for hour, count in ((3, 2), (17, 5)):
            key = raw_object_key("beacon", "2026-01-09", hour, f"seg-{hour}", count)
            await s3.put_object(Bucket="hw-raw", Key=key, Body=b"")
        await markers.note_shipped({("beacon", "2026-01-09")})
        await redis.flushall()
        later = utc_now() + timedelta(seconds=6)
        await markers.write_due(s3, local_pending=set())  # notices the loss and re-opens the day from the archive
        written = await markers.write_due(s3, local_pending=set(), now=later)
        assert "beacon/dt=2026-01-09/_COMPLETE" in written
        marker = await s3.get_object(Bucket="hw-raw", Key="beacon/dt=2026-01-09/_COMPLETE")
        assert orjson.loads(await marker["Body"].read())["events"] == 7
        # Rebuilt once: with the day marked, the next pass re-opens nothing.
        assert await markers.rebuild_if_lost(s3) == set()
