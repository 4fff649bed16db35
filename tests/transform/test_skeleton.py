"""The walking skeleton: a TransformRequest on SQS becomes curated Parquet, a manifest, bad rows, the advertising
view and a LoadRequest (contract 4)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from arq.worker import Worker
from botocore.exceptions import EndpointConnectionError

from services.transform import transform_jobs
from services.transform.settings import TransformSettings
from shared.messages import LoadRequest, TransformFailed, TransformRequest, dump_message, parse_message
from shared.queues import queue_url, send_message
from tests.helpers import wait_until
from tests.transform.sample import BAD_LINES, DT, good_beacons, jsonl, put_raw

PREFIX = f"beacon/dt={DT}/"


async def _body(s3: Any, bucket: str, key: str) -> bytes:
    response = await s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return await body.read()


async def _receive_all(sqs: Any, queue: str) -> list[Any]:
    url = await queue_url(sqs, queue)
    messages = []
    while True:
        response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        batch = response.get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            messages.append(parse_message(message["Body"]))
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


async def _wait_for_outcome(sqs: Any, settings: TransformSettings) -> Any:
    found: list[Any] = []

    async def _probe() -> bool:
        found.extend(await _receive_all(sqs, settings.queue("load-requests")))
        return bool(found)

    await wait_until(_probe, timeout=60, message="no message on load-requests")
    return found[0]


async def _put_beacon_partition(s3: Any, settings: TransformSettings) -> None:
    raw = settings.bucket("raw")
    events = good_beacons()
    await put_raw(s3, raw, f"{PREFIX}hour=10/a.json.gz", jsonl(events[:6], [line for line, _ in BAD_LINES]))
    await put_raw(s3, raw, f"{PREFIX}hour=11/b.json.gz", jsonl(events[6:]))
    await s3.put_object(Bucket=raw, Key=f"{PREFIX}_COMPLETE", Body=b"{}")


def _request(settings: TransformSettings, **overrides: Any) -> TransformRequest:
    values: dict[str, Any] = {
        "job_id": 7,
        "run_id": 70,
        "table": "ad_events",
        "schema_version": 1,
        "source_bucket": settings.bucket("raw"),
        "source_prefix": PREFIX,
        "dt": date(2026, 11, 24),
    }
    values.update(overrides)
    return TransformRequest(**values)


async def test_request_on_sqs_becomes_parquet_manifest_bad_rows_view_and_load_request(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker
) -> None:
    await _put_beacon_partition(s3, settings)
    request = _request(settings)
    await send_message(sqs, settings.queue("transform-requests"), request)

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, LoadRequest)
    assert (outcome.job_id, outcome.run_id, outcome.transform_id) == (7, 70, request.id)
    assert (outcome.rows_in, outcome.rows_out, outcome.rows_bad) == (17, 11, 6)
    curated = settings.bucket("curated")
    assert outcome.bucket == curated
    assert outcome.manifest_key == f"ad_events/v1/dt={DT}/_manifest.json"
    manifest = json.loads(await _body(s3, curated, outcome.manifest_key))
    assert {k: manifest["headwater"][k] for k in ("table", "version", "dt", "rows", "transform_id")} == {
        "table": "ad_events",
        "version": 1,
        "dt": DT,
        "rows": 11,
        "transform_id": request.id,
    }
    [entry] = manifest["entries"]
    assert entry["url"] == f"s3://{curated}/ad_events/v1/dt={DT}/part-00000.parquet"
    assert entry["mandatory"] is True
    part = await _body(s3, curated, f"ad_events/v1/dt={DT}/part-00000.parquet")
    assert entry["meta"] == {"content_length": len(part), "record_count": 11}
    table = pq.read_table(io.BytesIO(part))
    assert table.schema.names == [
        "event_id",
        "event_type",
        "ad_id",
        "campaign_id",
        "placement",
        "user_id",
        "event_time",
        "received_at",
    ]
    # UTC instants; the partition column lives in the path (dt=...), not in the file.
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    rows = sorted(table.to_pylist(), key=lambda r: r["event_id"])
    assert [r["event_id"] for r in rows] == [
        "ev-0000",
        "ev-0001",
        "ev-0002",
        "ev-0003",
        "ev-0004",
        "ev-0010",
        "ev-0011",
        "ev-0020",
        "ev-0021",
        "ev-0022",
        "ev-0030",
    ]
    assert rows[0] == {
        "event_id": "ev-0000",
        "event_type": "impression",
        "ad_id": "ad-1",
        "campaign_id": "camp-1",
        "placement": "top",
        "user_id": "user-0",
        "event_time": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        "received_at": datetime(2026, 11, 24, 10, 0, 1, 250000, tzinfo=UTC),
    }
    assert rows[-1]["user_id"] is None

    bad_key = f"ad_events/dt={DT}/{request.id}.jsonl.gz"
    bad = [
        orjson.loads(line)
        for line in gzip.decompress(await _body(s3, settings.bucket("bad-rows"), bad_key)).splitlines()
    ]
    assert len(bad) == 6
    for row, (_, expected) in zip(bad, BAD_LINES, strict=True):
        assert expected in row["reason"], row
        assert row["source"] == f"s3://{settings.bucket('raw')}/{PREFIX}hour=10/a.json.gz"
    assert bad[0]["record"]["type"] == "impression"
    assert bad[4]["record"] == '{"event_id": "ev-44", "type": "click"'

    assert outcome.advertising_view_key == f"_views/advertising/ad_events/v1/dt={DT}/part-00000.parquet"
    view = pq.read_table(io.BytesIO(await _body(s3, curated, outcome.advertising_view_key)))
    # The view's day is in its key (dt=...), like the tables'.
    assert view.schema.names == ["ad_id", "impressions", "clicks", "ctr"]
    assert view.to_pylist() == [
        {"ad_id": "ad-1", "impressions": 5, "clicks": 2, "ctr": 0.4},
        {"ad_id": "ad-2", "impressions": 3, "clicks": 1, "ctr": 1 / 3},
    ]


async def test_duplicate_request_message_is_a_no_op(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker
) -> None:
    await _put_beacon_partition(s3, settings)
    request = _request(settings)
    url = await queue_url(sqs, settings.queue("transform-requests"))
    await sqs.send_message(QueueUrl=url, MessageBody=dump_message(request))
    first = await _wait_for_outcome(sqs, settings)
    await sqs.send_message(QueueUrl=url, MessageBody=dump_message(request))

    async def _drained() -> bool:
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        return (
            attributes["ApproximateNumberOfMessages"] == "0"
            and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
        )

    await wait_until(_drained, timeout=30, message="duplicate request was not consumed")
    assert isinstance(first, LoadRequest)
    assert await _receive_all(sqs, settings.queue("load-requests")) == []


async def test_unknown_schema_sends_transform_failed(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker
) -> None:
    await _put_beacon_partition(s3, settings)
    await send_message(sqs, settings.queue("transform-requests"), _request(settings, table="nope", job_id=9))

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, TransformFailed)
    assert outcome.job_id == 9
    assert "nope v1 is not registered" in outcome.error


async def test_transient_s3_error_is_retried_with_backoff(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker, monkeypatch: Any
) -> None:
    await _put_beacon_partition(s3, settings)
    calls: list[int] = []
    real = transform_jobs.run_local_partition

    def _flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise EndpointConnectionError(endpoint_url="http://s3")
        return real(*args, **kwargs)

    monkeypatch.setattr(transform_jobs, "run_local_partition", _flaky)
    await send_message(sqs, settings.queue("transform-requests"), _request(settings))

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, LoadRequest)
    assert len(calls) == 2


async def test_transient_errors_past_the_retry_budget_send_transform_failed(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker, monkeypatch: Any
) -> None:
    calls: list[int] = []

    def _down(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://s3")

    monkeypatch.setattr(transform_jobs, "run_local_partition", _down)
    await send_message(sqs, settings.queue("transform-requests"), _request(settings))

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, TransformFailed)
    assert "Could not connect" in outcome.error
    assert len(calls) == settings.max_tries


async def test_a_run_waits_while_another_run_publishes_the_same_partition(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker
) -> None:
    await _put_beacon_partition(s3, settings)
    redis = running_worker.pool
    lock = f"hw:transform:lock:ad_events/v1/dt={DT}"
    await redis.set(lock, "another-run", ex=60)
    request = _request(settings)
    await send_message(sqs, settings.queue("transform-requests"), request)

    async def _waiting() -> bool:
        return await redis.zcard(running_worker.queue_name) == 1 and await redis.get(lock) == b"another-run"

    await wait_until(_waiting, timeout=20, message="the run did not queue up behind the lock")
    assert await _receive_all(sqs, settings.queue("load-requests")) == []
    await redis.delete(lock)

    outcome = await _wait_for_outcome(sqs, settings)
    assert isinstance(outcome, LoadRequest) and outcome.transform_id == request.id
    assert await redis.get(lock) is None


async def test_an_outcome_that_could_not_be_sent_is_sent_on_the_retry(
    settings: TransformSettings, s3: Any, sqs: Any, running_worker: Worker, monkeypatch: Any
) -> None:
    await _put_beacon_partition(s3, settings)
    failures: list[int] = []
    real = transform_jobs.send_outcome

    async def _flaky_send(wiring: Any, run: Any) -> None:
        if not failures:
            failures.append(1)
            raise ConnectionError("SQS unreachable")
        await real(wiring, run)

    monkeypatch.setattr(transform_jobs, "send_outcome", _flaky_send)
    await send_message(sqs, settings.queue("transform-requests"), _request(settings))

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, LoadRequest) and outcome.rows_out == 11
    assert failures == [1]


async def test_a_starting_worker_resumes_runs_whose_job_was_lost(
    settings: TransformSettings, s3: Any, sqs: Any, burst_worker: Any
) -> None:
    from services.transform.models import TransformRun
    from shared.db import create_engine, session_factory

    await _put_beacon_partition(s3, settings)
    engine = create_engine(settings)
    async with session_factory(engine)() as session:
        session.add(
            TransformRun(
                id="lost-run",
                table_name="ad_events",
                schema_version=1,
                dt=date(2026, 11, 24),
                source_bucket=settings.bucket("raw"),
                source_prefix=PREFIX,
                state="running",
            )
        )
        await session.commit()
    await engine.dispose()

    await burst_worker()

    outcome = await _wait_for_outcome(sqs, settings)
    assert isinstance(outcome, LoadRequest) and outcome.transform_id == "lost-run"
