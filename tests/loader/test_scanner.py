"""Scanner: source templates, Mycroft and Hive layouts, marker discovery and the TransformRequest contract."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx

from services.loader import scanner
from services.loader.templates import SourceTemplate
from services.loader.wiring import LoaderWiring
from shared.messages import TransformRequest, parse_message
from tests.helpers import wait_until
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.test_lifecycle import D1, job_body, wait_states


def test_templates_render_and_match_both_layouts() -> None:
    mycroft = SourceTemplate.parse("s3://logs-bucket/web/YYYY/MM/DD/")
    hive = SourceTemplate.parse("s3://hw-raw/beacon/dt={YYYY}-{MM}-{DD}/")
    day = date(2026, 3, 7)
    assert mycroft.prefix(day) == "web/2026/03/07/"
    assert hive.prefix(day) == "beacon/dt=2026-03-07/"
    assert mycroft.match_marker("logs-bucket", "web/2026/03/07/COMPLETE") == day
    assert hive.match_marker("hw-raw", "beacon/dt=2026-03-07/_COMPLETE") == day
    assert hive.match_marker("hw-raw", "beacon/dt=2026-03-07/hour=01/x.json.gz") is None
    assert hive.match_marker("other", "beacon/dt=2026-03-07/_COMPLETE") is None
    assert hive.match_marker("hw-raw", "beacon/dt=2026-02-30/_COMPLETE") is None


def test_s3_notification_keys_are_url_decoded() -> None:
    body = json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "hw-raw"}, "object": {"key": "beacon/dt%3D2026-11-20/_COMPLETE"}},
                }
            ]
        }
    )
    assert [(bucket, key) for bucket, key, _ in scanner.marker_events(body)] == [
        ("hw-raw", "beacon/dt=2026-11-20/_COMPLETE")
    ]
    assert scanner.marker_events('{"Event": "s3:TestEvent"}') == []


async def test_the_scan_finds_mycroft_layout_days_with_complete_markers_in_date_order(
    client: httpx.AsyncClient, aws: Any, wiring: LoaderWiring
) -> None:
    s3 = await aws.get("s3")
    raw = wiring.settings.bucket("raw")
    for day in ("2026/11/02", "2026/11/01", "2026/11/04"):
        await s3.put_object(Bucket=raw, Key=f"weblogs/{day}/part-0.json.gz", Body=b"")
        await s3.put_object(Bucket=raw, Key=f"weblogs/{day}/COMPLETE", Body=b"")
    await s3.put_object(Bucket=raw, Key="weblogs/2026/11/03/part-0.json.gz", Body=b"")  # not complete yet
    body = job_body(
        source=f"s3://{raw}/weblogs/YYYY/MM/DD/", start_date="2026-11-01", end_date="2026-11-05", engine="emr"
    )
    job_id = (await client.post("/v1/jobs", json=body)).json()["id"]

    assert await scanner.scan_all(wiring) == 1  # one date in flight per job
    runs = {r["dt"]: r["state"] for r in (await client.get(f"/v1/jobs/{job_id}/runs")).json()}
    assert runs == {"2026-11-01": "transforming", "2026-11-02": "waiting", "2026-11-04": "waiting"}

    sqs = await aws.get("sqs")
    url = (await sqs.get_queue_url(QueueName=wiring.settings.queue("transform-requests")))["QueueUrl"]
    messages = (await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1))["Messages"]
    assert len(messages) == 1
    request = parse_message(messages[0]["Body"])
    assert isinstance(request, TransformRequest)
    assert (request.job_id, request.table, request.schema_version, request.engine) == (job_id, "ad_events", 1, "emr")
    assert (request.source_bucket, request.source_prefix, request.dt) == (raw, "weblogs/2026/11/01/", date(2026, 11, 1))
    assert await scanner.scan_all(wiring) == 0

    # A transform that never answers counts as a failed attempt once its timeout passes.
    wiring.settings.transform_timeout_s = 0
    await scanner.scan_all(wiring)
    first = next(r for r in (await client.get(f"/v1/jobs/{job_id}/runs")).json() if r["dt"] == "2026-11-01")
    assert (first["state"], first["attempts"], first["error"]) == ("waiting", 1, "transform did not answer in time")
    assert first["next_attempt_at"] is not None


async def test_a_job_created_after_its_data_arrived_is_scanned_at_once(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    s3 = await aws.get("s3")
    await put_day(s3, wiring.settings, D1, beacon_events(D1, {"ad-1": (3, 1)}))
    sqs = await aws.get("sqs")
    events = (await sqs.get_queue_url(QueueName=wiring.settings.queue("s3-events")))["QueueUrl"]

    async def _events_consumed() -> bool:
        attributes = await sqs.get_queue_attributes(QueueUrl=events, AttributeNames=["All"])
        counts = attributes["Attributes"]
        return counts["ApproximateNumberOfMessages"] == "0" and counts["ApproximateNumberOfMessagesNotVisible"] == "0"

    await wait_until(_events_consumed, message="the marker event was not consumed")
    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D1.isoformat()))).json()["id"]
    runs = await wait_states(client, job_id, {D1.isoformat(): "loaded"})
    assert runs[D1.isoformat()]["rows_loaded"] == 4


def test_the_scan_window_rotates_so_a_long_gap_never_hides_later_days() -> None:
    from services.loader.models import Job

    job = Job(
        name="j",
        schema_name="s",
        schema_version=1,
        source="s3://hw-raw/x/YYYY/MM/DD/",
        start_date=date(2026, 1, 1),
        end_date=date(2026, 1, 10),
        table_name="s",
    )
    known = {date(2026, 1, 3)}
    first = scanner.candidate_dates(job, known, 4)
    assert first == [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 4), date(2026, 1, 5)]
    second = scanner.candidate_dates(job, known, 4, after=first[-1])
    assert second == [date(2026, 1, 6), date(2026, 1, 7), date(2026, 1, 8), date(2026, 1, 9)]
    third = scanner.candidate_dates(job, known, 4, after=second[-1])
    assert third == [date(2026, 1, 10), date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 4)]


async def test_a_marker_rewritten_after_loading_reloads_the_day_with_the_late_events(
    client: httpx.AsyncClient, worker: Any, transform: FakeTransform, aws: Any, wiring: LoaderWiring
) -> None:
    s3 = await aws.get("s3")
    job_id = (await client.post("/v1/jobs", json=job_body(end_date=D1.isoformat()))).json()["id"]
    await put_day(s3, wiring.settings, D1, beacon_events(D1, {"ad-1": (3, 1)}))
    runs = await wait_states(client, job_id, {D1.isoformat(): "loaded"})
    assert runs[D1.isoformat()]["rows_loaded"] == 4

    # Late events for the day: ingest archives them and rewrites the marker; the day is loaded again, exactly.
    await put_day(s3, wiring.settings, D1, beacon_events(D1, {"ad-1": (3, 1), "ad-2": (5, 2)}))

    async def _reloaded() -> dict | None:
        runs = (await client.get(f"/v1/jobs/{job_id}/runs")).json()
        run = runs[0]
        return run if run["state"] == "loaded" and run["rows_loaded"] == 11 else None

    await wait_until(_reloaded, timeout=30, message="the day was not reloaded with its late events")
    history = (await client.get(f"/v1/jobs/{job_id}/history")).json()
    assert [e["event"] for e in history].count("reload") == 1
