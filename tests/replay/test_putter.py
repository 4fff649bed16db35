"""PutRecords batching and retries against the emulator, with failures injected in front of it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from services.replay.putter import THROTTLED, Pacer, plan_batches, put_batch
from tests.replay.conftest import read_stream


class FlakyKinesis:
    """Forward to the real emulator client, failing chosen partition keys once and optionally a whole call."""

    def __init__(self, real: Any, fail_once: set[str], *, throttle_first_call: bool = False) -> None:
        self.real = real
        self.fail_once = set(fail_once)
        self.throttle_first_call = throttle_first_call
        self.calls: list[list[str]] = []

    async def put_records(self, StreamName: str, Records: list[dict]) -> dict:
        self.calls.append([r["PartitionKey"] for r in Records])
        if self.throttle_first_call:
            self.throttle_first_call = False
            raise ClientError({"Error": {"Code": THROTTLED, "Message": "slow down"}}, "PutRecords")
        results: list[dict | None] = [None] * len(Records)
        forward = []
        for index, record in enumerate(Records):
            if record["PartitionKey"] in self.fail_once:
                self.fail_once.discard(record["PartitionKey"])
                results[index] = {"ErrorCode": THROTTLED, "ErrorMessage": "rate exceeded"}
            else:
                forward.append(index)
        if forward:
            response = await self.real.put_records(StreamName=StreamName, Records=[Records[i] for i in forward])
            for index, result in zip(forward, response["Records"], strict=True):
                results[index] = result
        return {"FailedRecordCount": sum(1 for r in results if r and r.get("ErrorCode")), "Records": results}


def _batch(n: int) -> list[tuple[str, bytes]]:
    return [(f"k{i:02d}", f'{{"n": {i}}}'.encode()) for i in range(n)]


async def test_only_failed_records_are_retried_and_throttling_slows_down(aws, settings) -> None:
    kinesis = await aws.get("kinesis")
    flaky = FlakyKinesis(kinesis, {"k03", "k07", "k15"})
    pacer = Pacer(None)
    outcome = await put_batch(flaky, settings.stream("replay"), _batch(20), pacer=pacer, backoff_base_s=0.01)
    assert (outcome.emitted, outcome.failed, outcome.throttled) == (20, 0, 3)
    assert flaky.calls[1] == ["k03", "k07", "k15"]
    records = await read_stream(kinesis, settings.stream("replay"))
    assert sorted(r["data"]["n"] for r in records) == list(range(20))
    assert pacer.slowdown > 1.0


async def test_a_throttled_call_is_retried_whole(aws, settings) -> None:
    kinesis = await aws.get("kinesis")
    flaky = FlakyKinesis(kinesis, set(), throttle_first_call=True)
    pacer = Pacer(None)
    outcome = await put_batch(flaky, settings.stream("replay"), _batch(5), pacer=pacer, backoff_base_s=0.01)
    assert outcome.emitted == 5
    assert len(flaky.calls) == 2
    assert len(await read_stream(kinesis, settings.stream("replay"))) == 5


async def test_records_are_given_up_after_the_last_attempt(aws, settings) -> None:
    kinesis = await aws.get("kinesis")

    class AlwaysFailing(FlakyKinesis):
        async def put_records(self, StreamName: str, Records: list[dict]) -> dict:
            self.fail_once = {"k01"}
            return await super().put_records(StreamName, Records)

    flaky = AlwaysFailing(kinesis, set())
    outcome = await put_batch(
        flaky, settings.stream("replay"), _batch(3), pacer=Pacer(None), max_attempts=3, backoff_base_s=0.01
    )
    assert (outcome.emitted, outcome.failed, outcome.errors) == (2, 1, {THROTTLED: 1})
    assert len(flaky.calls) == 3


def test_batches_respect_count_bytes_and_one_record_per_key() -> None:
    sizes = [len(b) for b in plan_batches((f"k{i}", b"x") for i in range(1200))]
    assert sizes == [500, 500, 200]
    big = [(f"k{i}", b"x" * 100 * 1024) for i in range(120)]
    batches = list(plan_batches(big))
    assert all(sum(len(d) + len(k) for k, d in b) <= 5 * 1024 * 1024 for b in batches)
    assert sum(len(b) for b in batches) == 120 and len(batches) == 3
    keyed = [len(b) for b in plan_batches([("a", b"1"), ("b", b"2"), ("a", b"3"), ("c", b"4")])]
    assert keyed == [2, 2]


async def test_after_throttling_batches_are_spaced_out_until_puts_succeed_again() -> None:
    import time

    pacer = Pacer(None)
    started = time.monotonic()
    await pacer.wait_for(10)
    assert time.monotonic() - started < 0.05
    pacer.throttled()
    pacer.throttled()  # slowdown 4: a pause of about 0.15 s before the next batch
    started = time.monotonic()
    await pacer.wait_for(10)
    assert time.monotonic() - started >= 0.14
    for _ in range(10):
        pacer.succeeded()
    assert pacer.slowdown == 1.0
