"""What the loader's spec states about job requests and the traffic range (#13's schemathesis findings).

schemathesis found schema-valid requests refused with an undeclared 422: ``end_date`` before ``start_date`` on
``POST /v1/jobs`` and a traffic range wider than allowed. Those rules cannot be said in JSON Schema, so the 422 lists
them (``x-rules``); the table-name rule can, so the spec states its pattern.
"""

from __future__ import annotations

import re

import httpx
from jsonschema import Draft202012Validator

from services.loader.app import create_app
from services.loader.settings import LoaderSettings
from services.loader.traffic import MAX_RANGE_DAYS
from shared.openapi import RULES_EXTENSION

JOB = {
    "name": "rules",
    "schema_name": "ad_events",
    "schema_version": 1,
    "source": "s3://hw-raw/beacon/dt=YYYY-MM-DD/",
    "start_date": "2026-11-01",
}


def _spec() -> dict:
    return create_app(LoaderSettings()).openapi()


def test_rules_beyond_the_schema_are_declared_on_the_422() -> None:
    paths = _spec()["paths"]
    create = paths["/v1/jobs"]["post"]["responses"]["422"][RULES_EXTENSION]
    assert any("end_date" in rule for rule in create) and any("source" in rule for rule in create)
    assert any("end_date" in rule for rule in paths["/v1/jobs/{job_id}"]["patch"]["responses"]["422"][RULES_EXTENSION])
    traffic = paths["/v1/advertising/traffic/{ad_id}"]["get"]["responses"]["422"][RULES_EXTENSION]
    assert any(str(MAX_RANGE_DAYS) in rule for rule in traffic)


def test_the_table_name_rule_is_stated_and_the_server_agrees_with_it() -> None:
    table = _spec()["components"]["schemas"]["JobCreate"]["properties"]["table"]
    pattern = re.compile(table["pattern"])
    validator = Draft202012Validator(table)
    for name in ("ad_events", "_x", "a" * 63):
        assert validator.is_valid(name) and pattern.match(name)
    for name in ("Ad", "1a", "a-b", "a" * 64, ""):
        assert not validator.is_valid(name), name
    assert validator.is_valid(None)


async def test_end_before_start_and_a_bad_table_are_422_with_the_error_shape(client: httpx.AsyncClient) -> None:
    for body, field in (({**JOB, "end_date": "2026-10-01"}, "end_date"), ({**JOB, "table": "Bad-Name"}, "table")):
        response = await client.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert field in response.text
        assert set(response.json()["error"]) >= {"code", "message", "details"}
    wide = await client.get("/v1/advertising/traffic/ad-1", params={"start": "2000-01-01", "end": "2026-01-01"})
    assert wide.status_code == 422, wide.text
