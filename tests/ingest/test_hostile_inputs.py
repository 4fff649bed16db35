"""Hostile input to ingest (issue #13): a clear 4xx in the documented error shape, and no id left claimed."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import orjson
import pytest

from tests.ingest.conftest import Ingest

# Deeper than orjson writes (254 levels), shallower than it reads (1024): parsed, then unstorable.
DEPTHS = [260, 1000]


class Deep:
    """A JSON value nested ``depth`` levels deep, written as text (no encoder writes it so deep)."""

    def __init__(self, depth: int) -> None:
        self.text = "[" * depth + '"leaf"' + "]" * depth


def _body(value: Any) -> bytes:
    """Return ``value`` as JSON with each ``Deep`` written in place."""
    holes: list[str] = []

    def _hole(item: Any) -> Any:
        if isinstance(item, Deep):
            holes.append(item.text)
            return f"@@deep{len(holes) - 1}@@"
        raise TypeError(item)

    text = json.dumps(value, default=_hole)
    for index, hole in enumerate(holes):
        text = text.replace(f'"@@deep{index}@@"', hole)
    return text.encode()


def _basic(ingest: Ingest) -> dict[str, str]:
    token = base64.b64encode(f"{ingest.write_key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _is_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return error


@pytest.mark.parametrize("depth", DEPTHS)
async def test_an_event_nested_too_deep_is_a_422_and_its_id_is_free_again(ingest: Ingest, depth: int) -> None:
    deep = {"type": "impression", "ad_id": "a", "event_id": f"deep-{depth}", "properties": {"x": Deep(depth)}}
    headers = {**ingest.auth(), "Content-Type": "application/json"}
    refused = await ingest.http.post("/v1/events", content=_body({"events": [deep]}), headers=headers)
    assert _is_error(refused, 422)["code"] == "validation_error"
    shallow = {**deep, "properties": {"x": 1}}
    again = await ingest.http.post("/v1/events", json={"events": [shallow]}, headers=ingest.auth())
    assert again.status_code == 202, again.text
    assert again.json()["results"][0]["status"] == "accepted"


async def test_a_meter_read_with_a_raw_nested_too_deep_is_a_422(ingest: Ingest) -> None:
    read = {"cloud_id": "00a1", "demand_kw": 1.0, "event_id": "deep-read", "raw": {"x": Deep(300)}}
    headers = {**ingest.auth(), "Content-Type": "application/json"}
    _is_error(await ingest.http.post("/v1/meter-reads", content=_body({"reads": [read]}), headers=headers), 422)
    read["raw"] = {}
    assert (await ingest.http.post("/v1/meter-reads", json={"reads": [read]}, headers=ingest.auth())).status_code == 202


async def test_a_segment_message_nested_too_deep_is_a_422_and_its_message_id_is_free_again(ingest: Ingest) -> None:
    message = {"type": "track", "event": "E", "messageId": "seg-deep-1", "properties": {"x": Deep(300)}}
    refused = await ingest.http.post("/v1/batch", content=_body({"batch": [message]}), headers=_basic(ingest))
    _is_error(refused, 422)
    message["properties"] = {"x": 1}
    again = await ingest.http.post("/v1/batch", content=_body({"batch": [message]}), headers=_basic(ingest))
    assert again.status_code == 200 and again.json() == {"success": True}


async def test_a_snowplow_event_with_self_describing_data_nested_too_deep_is_a_422(ingest: Ingest) -> None:
    unstruct = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/deep/jsonschema/1-0-0", "data": {"x": Deep(300)}},
    }
    event = {"e": "ue", "eid": "sp-deep-1", "dtm": "1764072000000", "ue_pr": _body(unstruct).decode()}
    payload = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [event]}
    path = "/com.snowplowanalytics.snowplow/tp2"
    _is_error(await ingest.http.post(path, content=orjson.dumps(payload)), 422)
    unstruct["data"]["data"] = {"x": 1}  # type: ignore[index]
    event["ue_pr"] = json.dumps(unstruct)
    assert (await ingest.http.post(path, content=orjson.dumps(payload))).status_code == 200


@pytest.mark.parametrize("body", [[[None, None]], [None], {"events": [1, "x"]}])
async def test_a_batch_whose_every_event_is_rejected_answers_the_error_shape(ingest: Ingest, body: Any) -> None:
    error = _is_error(await ingest.http.post("/v1/events", json=body, headers=ingest.auth()), 422)
    items = body["events"] if isinstance(body, dict) else body
    assert [detail["field"] for detail in error["details"]] == [f"events.{i}" for i in range(len(items))]
    assert all(detail["reason"] == "event must be a JSON object" for detail in error["details"])


async def test_meter_reads_all_rejected_name_the_reads_and_why(ingest: Ingest) -> None:
    reads = [{"cloud_id": "00a1"}, {"demand_kw": 1.0}]
    error = _is_error(await ingest.http.post("/v1/meter-reads", json={"reads": reads}, headers=ingest.auth()), 422)
    assert [detail["field"] for detail in error["details"]] == ["reads.0", "reads.1"]
    assert "demand_kw" in error["details"][0]["reason"] and "cloud_id" in error["details"][1]["reason"]


@pytest.mark.parametrize("body", [[], {"events": []}])
async def test_an_empty_batch_is_a_422_and_the_spec_says_so(ingest: Ingest, body: Any) -> None:
    _is_error(await ingest.http.post("/v1/events", json=body, headers=ingest.auth()), 422)
    spec = ingest.app.openapi()
    schema = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    wrapped, bare = schema["oneOf"][0]["properties"]["events"], schema["oneOf"][1]
    assert wrapped["minItems"] == bare["minItems"] == 1
    reads = spec["paths"]["/v1/meter-reads"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # Items are validated one by one (issue #13's policy): the spec admits any object beside the documented read.
    read = reads["oneOf"][1]["items"]["anyOf"][0]
    assert reads["oneOf"][1]["minItems"] == 1 and {"cloud_id", "demand_kw"} <= set(read["required"])
