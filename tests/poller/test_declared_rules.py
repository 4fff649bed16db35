"""The poller's JSON-lines registration body and the rule its spec declares (#13, schemathesis with seed 14).

The JSON-lines form is a string in the spec, so text that is not JSON lines is schema-valid; the server refuses it with
422 (which line, why). That rule cannot be said in JSON Schema: the 422 lists it (``x-rules``), as every such rule is.
"""

from __future__ import annotations

from services.poller.app import create_app
from services.poller.settings import PollerSettings
from shared.openapi import RULES_EXTENSION
from tests.poller.conftest import Api


def test_the_spec_declares_the_json_lines_rule_on_the_422() -> None:
    responses = create_app(PollerSettings()).openapi()["paths"]["/v1/devices"]["post"]["responses"]
    assert any("JSON-lines" in rule for rule in responses["422"][RULES_EXTENSION])


async def test_text_that_is_not_json_lines_is_a_422_naming_the_line(api: Api) -> None:
    headers = {**api.admin, "Content-Type": "application/x-ndjson"}
    body = '{"cloud_id": "002600", "owner_email": "a@example.com", "eagle_password": "x"}\n\U000465a5`\x06f\x91^\n'
    response = await api.client.post("/v1/devices", content=body.encode(), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "line 2"
    blank = await api.client.post("/v1/devices", content=b"\n  \n", headers=headers)
    assert blank.status_code == 422, blank.text
