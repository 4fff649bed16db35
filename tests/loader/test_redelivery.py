"""SQS messages delivered twice and out of order to the loader (issue #17, scenario 6): no duplicate rows.

Real moto SQS/S3, real Redis, the loader's real worker and consumers, the fake transform of these tests (it
answers a TransformRequest with Parquet and a LoadRequest, as transform does). After two days are loaded, every
message the loader saw arrives again, newest day first: each LoadRequest twice, each S3 marker event (with its
original event time), and a TransformRequest (answered by a second LoadRequest with a new transform id for a
day already loaded). The warehouse keeps each row once and each day is loaded once.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx

from services.loader.wiring import LoaderWiring
from shared.contracts import day_marker_key
from shared.messages import LoadRequest, dump_message
from shared.queues import queue_url
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, DAYS, job_body, runs_by_date, wait_states

D2 = D1 + timedelta(days=1)


def _s3_event(bucket: str, key: str, when: str) -> str:
    """An S3 ObjectCreated notification as S3 sends it to SQS."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": when,
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
    }
    return json.dumps({"Records": [record]})


async def _idle(sqs: Any, wiring: LoaderWiring, urls: list[str]) -> bool:
    """Every queue drained (handled and deleted) and no load job queued in arq."""
    for url in urls:
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        if (
            attributes["ApproximateNumberOfMessages"] != "0"
            or attributes["ApproximateNumberOfMessagesNotVisible"] != "0"
        ):
            return False
    return int(await wiring.redis.zcard(wiring.settings.arq_queue)) == 0


async def test_redelivered_and_reordered_messages_load_each_day_once(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    settings = wiring.settings
    sent: list[LoadRequest] = []
    original = transform.transform

    async def _capturing(request: Any) -> LoadRequest:
        answer = await original(request)
        sent.append(answer)
        return answer

    transform.transform = _capturing  # type: ignore[method-assign]
    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D2.isoformat()))).json()["id"]
    s3, sqs = await aws.get("s3"), await aws.get("sqs")
    # The later day's marker first: the events reach the loader out of date order.
    for day in (D2, D1):
        await put_day(s3, settings, day, beacon_events(day, DAYS[day]))
    await wait_states(client, job_id, {D1.isoformat(): "loaded", D2.isoformat(): "loaded"})
    expected = {day: sum(i + c for i, c in DAYS[day].values()) for day in (D1, D2)}

    urls = {name: await queue_url(sqs, settings.queue(name)) for name in ("s3-events", "load-requests")}
    urls["transform-requests"] = await queue_url(sqs, settings.queue("transform-requests"))
    for answer in sorted(sent, key=lambda a: a.dt, reverse=True):
        for _ in range(2):
            await sqs.send_message(QueueUrl=urls["load-requests"], MessageBody=dump_message(answer))
    raw = settings.bucket("raw")
    for day in (D2, D1):
        key = day_marker_key("beacon", day)
        written = (await s3.head_object(Bucket=raw, Key=key))["LastModified"]
        body = _s3_event(raw, key, written.isoformat().replace("+00:00", "Z"))
        await sqs.send_message(QueueUrl=urls["s3-events"], MessageBody=body)
    requests_before = len(transform.requests)
    await sqs.send_message(QueueUrl=urls["transform-requests"], MessageBody=dump_message(transform.requests[0]))

    await wait_until(lambda: _true(len(transform.requests) == requests_before + 1), message="transform redelivery")
    await wait_until(lambda: _idle(sqs, wiring, list(urls.values())), timeout=30, message="queues drained")

    runs = await runs_by_date(client, job_id)
    history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
    for day in (D1, D2):
        run = runs[day.isoformat()]
        assert run["state"] == "loaded" and run["attempts"] == 1 and run["rows_loaded"] == expected[day]
        assert [e["event"] for e in history if e["dt"] == day.isoformat()].count("loaded") == 1
        count = await client.get("/v1/warehouse/ad_events/count", params={"dt": day.isoformat()})
        assert count.json()["rows"] == expected[day]
    traffic = await client.get("/v1/advertising/traffic/ad-1", params={"start": D1.isoformat(), "end": D2.isoformat()})
    assert [(d["impressions"], d["clicks"]) for d in traffic.json()["days"]] == [DAYS[D1]["ad-1"], DAYS[D2]["ad-1"]]


async def _true(value: bool) -> bool:
    return value
