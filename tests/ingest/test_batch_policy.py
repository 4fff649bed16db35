"""A batch is taken per item, and the spec says so (#13's schemathesis finding on ingest).

schemathesis sent a batch mixing valid and invalid events: the spec's item schema called the whole body invalid, the
server answered 202 (the valid events taken, the others listed as rejected). The policy kept is the server's, like
Segment's API: one bad event in a client's queue never costs the good ones. So the batch schema admits any item and
says each is validated on its own; a batch with no valid item is the declared 422.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from services.ingest import openapi
from shared.openapi import RULES_EXTENSION
from tests.ingest.conftest import Ingest

MIXED = [
    {"type": "impression", "ad_id": "a", "event_id": "mixed-0"},
    {"type": "click"},
    "not an object",
    {"type": "meter_read", "cloud_id": "c-1", "demand_kw": 1.5, "event_id": "mixed-3"},
]
NONE_VALID = [{"type": "click"}, 7]


def _events_schema() -> dict[str, Any]:
    return openapi.EVENTS_BODY["requestBody"]["content"]["application/json"]["schema"]


def _reads_schema() -> dict[str, Any]:
    return openapi.METER_BODY["requestBody"]["content"]["application/json"]["schema"]


def test_the_spec_admits_a_mixed_batch_and_still_refuses_a_bad_single_event_or_batch_shape() -> None:
    events = Draft202012Validator(_events_schema())
    for body in ({"events": MIXED}, MIXED, {"events": NONE_VALID}):
        assert events.is_valid(body), body
    for body in ({"type": "click"}, {"events": []}, [], "text"):
        assert not events.is_valid(body), body
    reads = Draft202012Validator(_reads_schema())
    assert reads.is_valid({"reads": [{"cloud_id": "c", "demand_kw": 1.0}, {"cloud_id": 5}]})
    assert not reads.is_valid({"reads": []})


async def test_a_mixed_batch_takes_the_valid_events_and_lists_the_others(ingest: Ingest) -> None:
    response = await ingest.http.post("/v1/events", json={"events": MIXED}, headers=ingest.auth())
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "accepted"]
    assert results[2]["reason"] == "event must be a JSON object"


async def test_a_batch_without_a_valid_event_is_the_declared_422(ingest: Ingest) -> None:
    response = await ingest.http.post("/v1/events", json={"events": NONE_VALID}, headers=ingest.auth())
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["events.0", "events.1"]
    spec = ingest.app.openapi()
    for path in ("/v1/events", "/v1/meter-reads"):
        declared = spec["paths"][path]["post"]["responses"]["422"]
        assert any("valid item" in rule for rule in declared[RULES_EXTENSION]), declared
