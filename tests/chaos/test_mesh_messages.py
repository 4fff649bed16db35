"""The mesh's messages under faults, with load flowing (issue #17, scenarios 5, 6 and 8): zero lost, zero duplicated.

Same mesh and scoreboard as ``test_mesh_faults.py`` (each scenario on its own days). Here the faults are in the
messages between the services rather than in the processes: poison messages on every queue, real messages
delivered twice and out of order, and events whose clocks are wrong (from the future, or very late for a day
already loaded).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.ingest.badrows import read_bad_rows
from shared.aws import AwsClients
from shared.queues import dead_letter_name, queue_url
from tests.chaos.conftest import ChaosMesh
from tests.chaos.scenario import Context, assert_exact, run_scenario, score
from tests.chaos.scoreboard import write_reliability_md
from tests.helpers import wait_until, wait_until_sync

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

QUEUES = ("s3-events", "transform-requests", "load-requests")
POLLERS = 3  # concurrent receivers per queue: enough to win some messages from the mesh's own consumer
HOLD_S = 300  # a captured message stays hidden from the consumers until it is redelivered (longer than any capture)


def _cli(mesh: ChaosMesh, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``headwater <args>`` as an operator on the mesh's host would (the running mesh's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HEADWATER_"))}
    env |= {
        "HEADWATER_DATA_DIR": str(mesh.data_dir),
        "HEADWATER_AWS_ENDPOINT_URL": mesh.moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    done = subprocess.run(
        [sys.executable, "-m", "headwater.main", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"headwater {' '.join(args)} failed: {done.stdout}\n{done.stderr}"
    return done


def _dead_letters(mesh: ChaosMesh) -> list[dict[str, Any]]:
    return list(json.loads(_cli(mesh, "dlq", "list", "--json").stdout))


def _holding(mesh: ChaosMesh, tokens: dict[str, str]) -> bool:
    """Return whether each queue's DLQ holds its poison message exactly once."""
    letters = _dead_letters(mesh)
    return all(sum(1 for x in letters if x["queue"] == q and token in x["summary"]) == 1 for q, token in tokens.items())


async def _send(mesh: ChaosMesh, queue: str, body: str) -> None:
    async with AwsClients(mesh.settings) as aws:
        sqs = await aws.get("sqs")
        await sqs.send_message(QueueUrl=await queue_url(sqs, mesh.settings.queue(queue)), MessageBody=body)


async def _purge_dead_letters(mesh: ChaosMesh) -> None:
    async with AwsClients(mesh.settings) as aws:
        sqs = await aws.get("sqs")
        for queue in QUEUES:  # received and deleted: PurgeQueue is allowed once a minute per queue
            url = await queue_url(sqs, dead_letter_name(mesh.settings.queue(queue)))
            while messages := (await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)).get("Messages"):
                for message in messages:
                    await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_a_poison_message_on_each_queue(chaos_mesh: ChaosMesh) -> None:
    mesh = chaos_mesh
    asyncio.run(_purge_dead_letters(mesh))  # only this scenario's poison is judged

    def _poison(ctx: Context) -> None:
        # Not an envelope, not even JSON: no retry can handle it. It must leave the queue for its DLQ at once,
        # and the load's own messages behind it keep flowing (the scoreboard checks that).
        tokens = {q: f"poison-{q}-{uuid.uuid4().hex[:8]}" for q in QUEUES}
        for queue, token in tokens.items():
            asyncio.run(_send(mesh, queue, f"{token} {{ this is not an envelope"))
        wait_until_sync(lambda: _holding(mesh, tokens), timeout=60, interval=1.0, message="poison not in each DLQ")
        listed = [x for x in _dead_letters(mesh) if any(t in x["summary"] for t in tokens.values())]
        # Listing leaves them there; redriving puts each back on its queue, where the consumer (still unable to
        # handle it: the cause is in the message itself) sends it to the DLQ again, once, while the load flows on.
        redriven = json.loads(_cli(mesh, "dlq", "redrive", "--json").stdout)
        assert all(redriven[q] >= 1 for q in QUEUES), redriven
        wait_until_sync(
            lambda: _holding(mesh, tokens), timeout=60, interval=1.0, message="redriven poison not back in its DLQ"
        )
        ctx.notes.append(
            "a non-JSON body sent to each of s3-events, transform-requests and load-requests went to that queue's "
            f"DLQ at once ({len(listed)} listed by `headwater dlq list --json`, receive counts "
            f"{sorted(x['receive_count'] for x in listed)}); `headwater dlq redrive` moved "
            f"{sum(redriven.values())} back and each poison message returned to its DLQ exactly once (its cause is "
            "in the message, so a redrive cannot fix it; the redrive of a message whose cause was fixed is tested "
            "in tests/shared/test_deadletter.py). The queues kept flowing: the scoreboard is exact"
        )

    try:
        result = run_scenario(mesh, "poison-message", _poison)
    finally:
        asyncio.run(_purge_dead_letters(mesh))
    assert_exact(result, mesh)


class Redeliverer:
    """Take real messages off the mesh's queues as the consumers would, then deliver each twice, newest first."""

    def __init__(self, mesh: ChaosMesh, per_queue: int = 1, timeout_s: float = 90.0) -> None:
        self.mesh = mesh
        self.per_queue = per_queue
        self.timeout_s = timeout_s
        self.captured: list[tuple[str, dict[str, Any]]] = []  # (queue, message) in the order taken
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="chaos-redeliver", daemon=True)

    def start(self) -> Redeliverer:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(self.timeout_s + 240)
        assert not self._thread.is_alive(), "the redeliverer never finished"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._capture_and_redeliver())
        except BaseException as exc:  # re-raised in the test's thread by join()
            self.error = exc

    async def _capture_and_redeliver(self) -> None:
        async with AwsClients(self.mesh.settings) as aws:
            sqs = await aws.get("sqs")
            urls = {q: await queue_url(sqs, self.mesh.settings.queue(q)) for q in QUEUES}
            deadline = time.monotonic() + self.timeout_s

            async def _take(queue: str) -> None:
                # Competing with the consumers' long polls, as more consumers would. A copy of what is taken goes
                # back at once (so the chain behind it goes on); the original stays hidden for now.
                while time.monotonic() < deadline and sum(1 for q, _ in self.captured if q == queue) < self.per_queue:
                    response = await sqs.receive_message(
                        QueueUrl=urls[queue], MaxNumberOfMessages=1, WaitTimeSeconds=2, VisibilityTimeout=HOLD_S
                    )
                    for message in response.get("Messages", []):
                        self.captured.append((queue, message))
                        await sqs.send_message(QueueUrl=urls[queue], MessageBody=message["Body"])

            await asyncio.gather(*(_take(q) for q in QUEUES for _ in range(POLLERS)))
            # Then out of order, the last taken first (a load request before the transform request and the S3
            # event behind it): a second copy of each, and the original itself delivered again (visible at once,
            # its receive count 2), so every captured message reaches its consumer three times.
            for queue, message in reversed(self.captured):
                await sqs.send_message(QueueUrl=urls[queue], MessageBody=message["Body"])
                await sqs.change_message_visibility(
                    QueueUrl=urls[queue], ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            # Every delivery handled before the scoreboard is read.
            for url in urls.values():
                await wait_until(lambda u=url: _queue_empty(sqs, u), timeout=120, interval=0.5)


async def _queue_empty(sqs: Any, url: str) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return all(attributes[n] == "0" for n in names)


def test_the_same_messages_delivered_twice_and_out_of_order(chaos_mesh: ChaosMesh) -> None:
    redeliverer = Redeliverer(chaos_mesh)
    held_before = asyncio.run(_dead_letter_count(chaos_mesh))  # left by other scenarios, if any

    def _start(ctx: Context) -> None:
        # The days' markers (and so their S3 events, transform and load requests) only come once the days are
        # quiet, after the load stops: the capture starts during the load and goes on until it has its messages.
        redeliverer.start()

    def _finish(ctx: Context, days: list[date]) -> None:
        redeliverer.join()
        by_queue = {q: sum(1 for c, _ in redeliverer.captured if c == q) for q in QUEUES}
        assert all(by_queue.values()), f"no real message taken from some queue: {by_queue}"
        ctx.notes.append(
            f"real messages taken off the queues while the days went through ({by_queue}): a copy of each sent "
            "back at once, then, in reverse order of capture (load requests before the transform requests and S3 "
            "marker events that caused them), a second copy and the original redelivered (receive count 2): each "
            "handled three times, no row doubled anywhere"
        )

    result = run_scenario(chaos_mesh, "sqs-redelivery", _start, after_load=_finish)
    assert_exact(result, chaos_mesh)
    assert asyncio.run(_dead_letter_count(chaos_mesh)) == held_before, "a redelivered message ended in a DLQ"


async def _dead_letter_count(mesh: ChaosMesh) -> int:
    async with AwsClients(mesh.settings) as aws:
        sqs = await aws.get("sqs")
        total = 0
        for queue in QUEUES:
            url = await queue_url(sqs, dead_letter_name(mesh.settings.queue(queue)))
            attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            total += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        return total


async def _bad_rows(mesh: ChaosMesh) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers=mesh.headers, timeout=10) as http:
        listing = (await http.get(f"{mesh.urls['ingest']}/v1/bad-rows")).json()
    async with AwsClients(mesh.settings) as aws:
        s3 = await aws.get("s3")
        rows: list[dict[str, Any]] = []
        for entry in listing["objects"]:
            rows += await read_bad_rows(s3, bucket=mesh.settings.bucket("bad-rows"), key=entry["key"])
        return rows


def test_events_from_the_future_and_very_late_events(chaos_mesh: ChaosMesh) -> None:
    mesh = chaos_mesh
    future_ids: list[str] = []
    started: list[float] = []

    def _future(ctx: Context) -> None:
        # Ingest acknowledges an event before judging its clock (skew is judged when the spool ships): these get
        # 202 "accepted" but must end as bad rows with the reason, never in a day. They are sent beside the load,
        # not through it, so they are not in the acknowledged set the scoreboard holds the days to.
        started.append(time.monotonic())
        now = datetime.now(UTC)
        events = []
        for n, ahead in enumerate((timedelta(hours=3), timedelta(days=2), timedelta(hours=1, minutes=30))):
            event_id = f"chaos-clock-skew-future-{n}-{uuid.uuid4().hex[:8]}"
            at = (now + ahead).strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append({"event_id": event_id, "type": "impression", "ad_id": "chaos-ad-1", "event_time": at})
            future_ids.append(event_id)
        answer = httpx.post(f"{mesh.urls['ingest']}/v1/events", json={"events": events}, headers=mesh.headers)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == len(events), answer.text

    def _late(ctx: Context, days: list[date]) -> None:
        # First the scenario's days are loaded, every hop exact; then more events arrive for the first day, very
        # late. They must reach the warehouse exactly once through the late-data path (marker rewritten, day
        # reloaded): the scoreboard then holds the day to the late events too.
        acks = ctx.load.acks
        wait_until_sync(
            lambda: all(r["exact"] for r in asyncio.run(score(mesh, days, acks, full=False))),
            timeout=150,
            interval=1.0,
            message="the days were never loaded before the late events",
        )
        loaded_at = time.monotonic()
        day = days[0].isoformat()
        late_ads = [
            {
                "event_id": f"chaos-clock-skew-late-ad-{n}",
                "type": "click" if n % 3 == 0 else "impression",
                "event_time": f"{day}T17:{n:02d}:00Z",
                "ad_id": "chaos-ad-2",
                "campaign_id": "chaos",
            }
            for n in range(6)
        ]
        late_reads = [
            {
                "event_id": f"chaos-clock-skew-late-read-{n}",
                "type": "meter_read",
                "event_time": f"{day}T17:{n:02d}:30Z",
                "cloud_id": "000007",
                "demand_kw": 1.5,
                "summation_delivered_kwh": 1500.0,
                "summation_received_kwh": 0.0,
                "raw": {"source": "chaos"},
            }
            for n in range(4)
        ]
        ctx.load.deliver("/v1/events", late_ads)
        ctx.load.deliver("/v1/meter-reads", late_reads)
        assert {e["event_id"] for e in late_ads + late_reads} <= acks.acked
        ctx.notes.append(
            f"{len(late_ads)} ad events and {len(late_reads)} meter reads for {day} sent "
            f"{(datetime.now(UTC).date() - days[0]).days} days late, once that day was loaded (every hop exact "
            f"{loaded_at - started[0]:.0f}s after the fault); the day was reloaded and holds them once"
        )

    result = run_scenario(mesh, "clock-skew", _future, after_load=_late)
    rows = wait_until_sync(
        lambda: [r for r in asyncio.run(_bad_rows(mesh)) if r["original"].get("event_id") in future_ids] or None,
        timeout=60,
        interval=1.0,
        message="the future events are not bad rows",
    )
    assert sorted(r["original"]["event_id"] for r in rows) == sorted(future_ids)
    assert all("after received_at" in r["reason"] for r in rows), [r["reason"] for r in rows]
    result.notes.append(
        f"{len(future_ids)} events 1.5 h to 2 days in the future (allowed skew 1 h): answered 202 accepted (the "
        "clock is judged when the spool ships), each then a bad row with its reason "
        f"({rows[0]['reason']!r}), in no day, not counted as acknowledged above"
    )
    result.save()
    write_reliability_md()
    assert_exact(result, mesh)
