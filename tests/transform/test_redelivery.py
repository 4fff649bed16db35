"""Transform requests delivered twice and out of order (issue #17, scenario 6): the curated day is never doubled.

Real moto SQS and S3, the real worker consuming the queue. Three deliveries for one partition: request A, a
second request B for the same day (what a re-sent marker or a loader retry produces: a new envelope id), then
A again after B (a redelivery arriving late), then C. A reader of the day's Parquet sees each good event exactly once.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import pyarrow.parquet as pq
from arq.worker import Worker

from services.transform.settings import TransformSettings
from shared.contracts import CuratedPartition
from shared.messages import LoadRequest, TransformRequest, dump_message, parse_message
from shared.queues import queue_url
from tests.helpers import wait_until
from tests.transform.sample import DT, good_beacons, jsonl, put_raw

PREFIX = f"beacon/dt={DT}/"


def _request(settings: TransformSettings) -> TransformRequest:
    return TransformRequest(
        job_id=7,
        run_id=70,
        table="ad_events",
        schema_version=1,
        source_bucket=settings.bucket("raw"),
        source_prefix=PREFIX,
        dt=date.fromisoformat(DT),
    )


async def _drained(sqs: Any, url: str) -> bool:
    attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


async def _curated_rows(s3: Any, settings: TransformSettings) -> list[dict[str, Any]]:
    """Every row a reader of the day's prefix sees (all Parquet parts under it, as Athena or DuckDB read it)."""
    bucket = settings.bucket("curated")
    prefix = CuratedPartition("ad_events", 1, date.fromisoformat(DT)).day_prefix
    listing = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    rows: list[dict[str, Any]] = []
    for obj in listing.get("Contents", []):
        if obj["Key"].endswith(".parquet"):
            body = await (await s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
            rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return rows


async def test_duplicate_and_late_requests_for_a_day_leave_each_event_once_in_curated_parquet(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker
) -> None:
    events = good_beacons()
    await put_raw(s3, settings.bucket("raw"), f"{PREFIX}hour=10/a.json.gz", jsonl(events))
    url = await queue_url(sqs, settings.queue("transform-requests"))
    load_url = await queue_url(sqs, settings.queue("load-requests"))
    first, second = _request(settings), _request(settings)
    outcomes: list[LoadRequest] = []

    async def _outcomes(n: int) -> bool:
        response = await sqs.receive_message(QueueUrl=load_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            outcome = parse_message(message["Body"])
            assert isinstance(outcome, LoadRequest), outcome
            outcomes.append(outcome)
            await sqs.delete_message(QueueUrl=load_url, ReceiptHandle=message["ReceiptHandle"])
        return len(outcomes) >= n

    # A, then A again at once (a duplicate delivery), then B while A may still be running.
    for request in (first, first, second):
        await sqs.send_message(QueueUrl=url, MessageBody=dump_message(request))
    await wait_until(lambda: _outcomes(2), timeout=90, message="two load requests (A and B)")
    # A once more, after B was published: a late redelivery of the older message.
    await sqs.send_message(QueueUrl=url, MessageBody=dump_message(first))
    await wait_until(lambda: _drained(sqs, url), timeout=30, message="transform-requests drained")
    # Then a new request C: had the late A been transformed again, its outcome would come before C's.
    third = _request(settings)
    await sqs.send_message(QueueUrl=url, MessageBody=dump_message(third))
    await wait_until(lambda: _outcomes(3), timeout=90, message="C's load request")

    assert [o.transform_id for o in outcomes].count(first.id) == 1, "a redelivered request was transformed again"
    assert {o.transform_id for o in outcomes} == {first.id, second.id, third.id}
    rows = await _curated_rows(s3, settings)
    ids = [row["event_id"] for row in rows]
    assert sorted(ids) == sorted(e["event_id"] for e in events)
    assert all(o.rows_out == len(events) for o in outcomes)
