"""The whole mesh under faults, with load flowing: after each, zero lost and zero duplicated at every hop.

One mesh serves every scenario (each uses its own days, so its counts are exact); scenarios run in file order.
Every test regenerates docs/reliability.md from the results saved so far.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import ChaosMesh
from tests.chaos.faults import DiskHog, sqlite_locked
from tests.chaos.scenario import (
    Context,
    archive_progress,
    assert_exact,
    poller_reads_after,
    run_scenario,
    spool_segments,
)
from tests.helpers import wait_until_sync

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

KILLED_IN_TURN = (
    "ingest",
    "transform",
    "transform-worker",
    "loader",
    "loader-worker",
    "replay",
    "replay-worker",
    "poller",
    "poller-worker",
)


def _kill_each_in_turn(ctx: Context) -> None:
    # Each process is killed once `up` has started its replacement for the previous one; the replacements boot
    # side by side (waiting for each to be ready before the next kill would only add their start-up times).
    mesh = ctx.mesh
    started = time.monotonic()
    for name in KILLED_IN_TURN:
        pid = mesh.pid_of(name)
        assert pid is not None, f"{name} is not running under headwater up"
        os.kill(pid, signal.SIGKILL)
        wait_until_sync(
            lambda n=name, p=pid: (q := mesh.pid_of(n)) is not None and q != p,
            timeout=30,
            message=f"headwater up did not restart {name}",
        )
    wait_until_sync(mesh.ready, timeout=120, message="the restarted APIs did not become ready")
    ctx.notes.append(
        f"{len(KILLED_IN_TURN)} processes killed in turn, each restarted by `headwater up`; every API ready again "
        f"{time.monotonic() - started:.0f}s after the first kill"
    )


def test_kill_9_each_api_process_and_worker_in_turn(chaos_mesh: ChaosMesh) -> None:
    result = run_scenario(chaos_mesh, "kill-9", _kill_each_in_turn)
    assert_exact(result, chaos_mesh)
    assert "restarted" in (chaos_mesh.data_dir / "up.out").read_text()


def test_redis_restarted_keeping_its_data(chaos_mesh: ChaosMesh) -> None:
    def _restart(ctx: Context) -> None:
        away = ctx.mesh.redis.restart_keeping_data()
        ctx.notes.append(f"Redis away {away:.1f}s (SHUTDOWN SAVE, then started on the same port from dump.rdb)")
        wait_until_sync(ctx.mesh.ready, timeout=60, message="services not ready after Redis came back")

    result = run_scenario(chaos_mesh, "redis-restart", _restart)
    assert_exact(result, chaos_mesh)


def test_redis_flushed(chaos_mesh: ChaosMesh) -> None:
    def _flush(ctx: Context) -> None:
        keys = ctx.mesh.redis.flush()
        ctx.notes.append(f"FLUSHALL dropped {keys} keys")
        wait_until_sync(ctx.mesh.ready, timeout=60, message="services not ready after the flush")

    def _flush_again_before_the_markers(ctx: Context, days: list[date]) -> None:
        # The sharpest moment: every event archived, the days' markers not yet written (ingest waits for the day to
        # be quiet first). Only the open-days hash in Redis knew those days still needed one.
        wait_until_sync(
            lambda: asyncio.run(archive_progress(ctx.mesh, days, ctx.load.acks))[0],
            timeout=60,
            interval=0.2,
            message="acknowledged events not archived",
        )
        markers = asyncio.run(archive_progress(ctx.mesh, days, ctx.load.acks))[1]
        keys = ctx.mesh.redis.flush()
        ctx.notes.append(
            f"flushed again once everything was archived, with {4 - markers} of 4 day markers still to write "
            f"({keys} keys dropped); ingest re-derived the open days from the archive and wrote them"
        )
        # The poller's device registry is durable in the metadata database: the poller's processes rebuild Redis's
        # copy from it (their check of the loaded marker runs every few seconds), with no operator re-registering.
        flushed_at = datetime.now(UTC)
        started = time.monotonic()
        wait_until_sync(
            lambda: poller_reads_after(ctx.mesh, flushed_at) == len(ctx.mesh.meters),
            timeout=60,
            interval=1.0,
            message="the poller did not read every registered meter again after the flush",
        )
        ctx.notes.append(
            f"derived, rebuilt: the poller's device registry (durable in the metadata database); all "
            f"{len(ctx.mesh.meters)} meters served and read again {time.monotonic() - started:.0f}s after the flush, "
            "none registered again. Derived and rebuilt: ingest's open "
            "days (from the archive) and pending-day announcements (republished every pass). Lost: dedup marks (a "
            "retry of an id acknowledged before the flush would be archived twice), the last minutes of real-time "
            "counters, the poller's observed device states and read counters, and arq queues (a transform run "
            "queued at that instant waits for the transform worker's next start, which re-enqueues unfinished runs "
            "from the database: not hit in this run)."
        )

    result = run_scenario(chaos_mesh, "redis-flush", _flush, after_load=_flush_again_before_the_markers)
    assert_exact(result, chaos_mesh)


def test_aws_endpoint_unreachable_for_30_s(chaos_mesh: ChaosMesh) -> None:
    def _outage(ctx: Context) -> None:
        acked_before = len(ctx.load.acks.acked)
        ctx.mesh.proxy.down()
        try:
            time.sleep(30)  # the outage's length: the fault itself, not a wait for something
        finally:
            ctx.mesh.proxy.up()
        during = len(ctx.load.acks.acked) - acked_before
        ctx.notes.append(f"ingest kept acknowledging from its spool during the outage: {during} events")
        assert during > 0, "ingest stopped acknowledging while AWS was away (the spool should absorb it)"

    result = run_scenario(chaos_mesh, "aws-down", _outage)
    assert_exact(result, chaos_mesh)


def test_metadata_db_locked_for_20_s(chaos_mesh: ChaosMesh) -> None:
    def _locked(ctx: Context) -> None:
        with sqlite_locked(ctx.mesh.database):
            time.sleep(20)  # the lock's length: the fault itself
        ctx.notes.append("SQLite held in an exclusive write transaction; writers wait (busy_timeout), readers go on")

    result = run_scenario(chaos_mesh, "db-locked", _locked)
    assert_exact(result, chaos_mesh)


def test_ingest_spool_disk_full(chaos_mesh: ChaosMesh) -> None:
    if chaos_mesh.spool_disk is None:
        pytest.skip(f"no tmpfs for the spool here: {chaos_mesh.spool_disk_error}")
    disk: Path = chaos_mesh.spool_disk

    def _full(ctx: Context) -> None:
        refused_before = ctx.load.acks.refused_503
        hog = DiskHog(disk / "filler").start()
        try:
            wait_until_sync(
                lambda: ctx.load.acks.refused_503 > refused_before, timeout=30, message="no 503 while the disk is full"
            )
            # While full: a direct request is refused with a Retry-After, never a 500. Polled: the shipper frees a
            # segment now and then, and a request can slip into that space before the hog takes it back.
            probes: list[int] = []

            def _refused() -> bool:
                answer = httpx.post(
                    f"{ctx.mesh.urls['ingest']}/v1/events",
                    json={
                        "events": [{"type": "impression", "ad_id": "probe", "event_id": f"disk-probe-{len(probes)}"}]
                    },
                    headers=ctx.mesh.headers,
                    timeout=10,
                )
                probes.append(answer.status_code)
                return answer.status_code == 503 and bool(answer.headers.get("retry-after"))

            wait_until_sync(_refused, timeout=15, interval=0.2, message="a direct request was not refused with 503")
            assert set(probes) <= {202, 503}, f"ingest answered {probes} while the disk was full"
            time.sleep(3)  # the length of the fault: a few more seconds of refusals for the load to retry through
        finally:
            hog.release()
        filled = hog.written
        refused = ctx.load.acks.refused_503 - refused_before
        acked = len(ctx.load.acks.acked)
        wait_until_sync(lambda: len(ctx.load.acks.acked) > acked, timeout=30, message="accepting did not resume")
        ctx.notes.append(
            f"filled the spool's {disk.name} tmpfs ({filled // 1024} KiB filler): {refused} requests refused with "
            f"503 + Retry-After {sorted(ctx.load.acks.retry_after_seen)}, retried until accepted once space returned"
        )

    result = run_scenario(chaos_mesh, "spool-disk-full", _full)
    assert_exact(result, chaos_mesh)


def test_slow_aws_every_call_delayed_2_s(chaos_mesh: ChaosMesh) -> None:
    def _slow(ctx: Context) -> None:
        acked_before = len(ctx.load.acks.acked)
        ctx.mesh.proxy.slow(2.0)
        most = 0
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # sample the spool's depth while AWS is slow
                most = max(most, spool_segments(ctx.mesh))
                time.sleep(0.5)
        finally:
            ctx.mesh.proxy.up()
        during = len(ctx.load.acks.acked) - acked_before
        assert during > 0, "ingest stopped acknowledging while AWS was slow"
        ctx.notes.append(
            f"{during} events acknowledged during the 20 s of slowness; the spool held up to {most} segments "
            "(back-pressure: requests answer from the spool, the shipper catches up after)"
        )

    result = run_scenario(chaos_mesh, "slow-aws", _slow)
    assert_exact(result, chaos_mesh)
    wait_until_sync(lambda: spool_segments(chaos_mesh) == 0, timeout=60, message="the spool did not drain")
