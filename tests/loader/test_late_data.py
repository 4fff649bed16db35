"""Late events for a day the loader already took (issue #17, scenario 8): the warehouse ends with each row once.

Real moto S3/SQS (the marker rewrite reaches the loader as S3's own notification), real Redis, the loader's
worker and consumers, the fake transform of these tests. The existing test_scanner case covers a marker
rewritten after the day was loaded; these cover the rewrite landing while the day is in flight.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from services.loader.wiring import LoaderWiring
from shared.messages import LoadRequest
from shared.queues import queue_url
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, job_body

EARLY = {"ad-1": (3, 1)}
LATE = {"ad-1": (3, 1), "ad-2": (5, 2)}


async def _loaded_rows(client: httpx.AsyncClient, job_id: int, rows: int) -> dict | None:
    runs = (await client.get(f"/v1/jobs/{job_id}/runs")).json()
    run = runs[0] if runs else {}
    return run if run.get("state") == "loaded" and run["rows_loaded"] == rows else None


async def test_late_events_written_while_the_day_is_transforming_are_reloaded_once(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    """Regression: the rewritten marker arrived while the run was transforming and was ignored, so the late
    events never reached the warehouse (the load finished after the marker, so no later check fired)."""
    s3, sqs = await aws.get("s3"), await aws.get("sqs")
    original = transform.transform
    late_written = asyncio.Event()

    async def _late_after_reading_raw(request: Any) -> LoadRequest:
        answer = await original(request)  # the raw day is read: 4 events
        if not late_written.is_set():
            late_written.set()
            await put_day(s3, wiring.settings, D1, beacon_events(D1, LATE))  # marker rewritten meanwhile

            await wait_until(_s3_events_drained, timeout=20, message="the late marker's S3 event was not handled")
        return answer

    async def _s3_events_drained() -> bool:  # the loader handled the marker's S3 event while transforming
        url = await queue_url(sqs, wiring.settings.queue("s3-events"))
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))["Attributes"]
        return attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"

    transform.transform = _late_after_reading_raw  # type: ignore[method-assign]
    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D1.isoformat()))).json()["id"]
    await put_day(s3, wiring.settings, D1, beacon_events(D1, EARLY))

    run = await wait_until(lambda: _loaded_rows(client, job_id, 11), timeout=40, message="late events not reloaded")
    assert run["attempts"] == 1
    count = await client.get("/v1/warehouse/ad_events/count", params={"dt": D1.isoformat()})
    assert count.json()["rows"] == 11
    history = [e["event"] for e in (await client.get(f"/v1/jobs/{job_id}/history")).json()]
    assert history.count("reload") == 1
    assert len(transform.requests) == 2
