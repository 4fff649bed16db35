"""Accepted events that fail validation when shipped go to bad rows, are counted, and can be re-submitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.ingest.badrows import read_bad_rows
from shared.aws import AwsClients
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, archived_records


async def test_future_event_goes_to_bad_rows_and_can_be_resubmitted(ingest: Ingest, aws: AwsClients) -> None:
    future = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    events = [
        {"type": "impression", "ad_id": "a", "event_id": "ok-1"},
        {"type": "click", "ad_id": "a", "event_id": "skewed-1", "timestamp": future, "properties": {"k": 1}},
    ]
    response = await ingest.http.post("/v1/events", json=events, headers=ingest.auth())
    assert response.json()["accepted"] == 2, "clock skew is only found after acceptance"

    async def _summary() -> dict | None:
        body = (await ingest.http.get("/v1/bad-rows", headers=ingest.auth(ingest.read_key))).json()
        return body if body["total"] == 1 else None

    summary = await wait_until(_summary, message="bad row counted")
    [entry] = summary["objects"]
    s3 = await aws.get("s3")
    [row] = await read_bad_rows(s3, bucket=ingest.settings.bucket("bad-rows"), key=entry["key"])
    assert "after received_at" in row["reason"]
    assert row["original"]["event_id"] == "skewed-1" and row["original"]["properties"] == {"k": 1}
    archived = await wait_until(lambda: archived_records(aws, ingest.settings), message="good event archived")
    assert [record["event_id"] for record in archived] == ["ok-1"]

    resubmit = await ingest.http.post(
        "/v1/bad-rows/resubmit", json={"key": entry["key"], "reset_event_time": True}, headers=ingest.auth()
    )
    assert resubmit.status_code == 202, resubmit.text
    assert resubmit.json()["resubmitted"] == 1

    async def _both_archived() -> list[dict] | None:
        records = await archived_records(aws, ingest.settings)
        return records if len(records) == 2 else None

    records = {record["event_id"]: record for record in await wait_until(_both_archived, message="resubmitted")}
    again = records["skewed-1"]
    assert again["event_time"] == again["received_at"] and again["properties"] == {"k": 1}
    assert (await ingest.http.get("/v1/bad-rows", headers=ingest.auth(ingest.read_key))).json()["total"] == 0
    twice = await ingest.http.post("/v1/bad-rows/resubmit", json={"key": entry["key"]}, headers=ingest.auth())
    assert twice.status_code == 404


async def test_resubmission_needs_ingest_write(ingest: Ingest) -> None:
    body = {"key": "ingest/dt=2026-11-25/x-n1.jsonl.gz"}
    response = await ingest.http.post("/v1/bad-rows/resubmit", json=body, headers=ingest.auth(ingest.read_key))
    assert response.status_code == 403
