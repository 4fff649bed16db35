"""What transform's spec states about a transform request and a schema upload (#13's schemathesis findings).

schemathesis sent ``hour: 300`` as a valid request: the bound was on the Optional field, where pydantic wrote it as
the unknown keywords ``ge``/``le``, so the spec did not state it. Rules the schema cannot state (the date range, a
schema document's format) are declared on the 422 (``x-rules``) instead of being undocumented refusals.
"""

from __future__ import annotations

import httpx

from services.transform.app import create_app
from services.transform.models import MAX_RANGE_DAYS
from services.transform.settings import TransformSettings
from shared.openapi import RULES_EXTENSION

BASE = {"table": "nowhere", "version": 1, "source_path": "s3://hw-raw/beacon/dt={dt}/", "dt": "2026-11-24"}


def test_the_hour_bound_is_stated_in_the_spec() -> None:
    spec = create_app(TransformSettings()).openapi()
    hour = spec["components"]["schemas"]["TransformCreate"]["properties"]["hour"]
    integer = next(branch for branch in hour["anyOf"] if branch.get("type") == "integer")
    assert (integer.get("minimum"), integer.get("maximum")) == (0, 23), hour
    assert not {"ge", "le"} & set(integer)


def test_the_rules_beyond_the_schema_are_declared_on_the_422() -> None:
    paths = create_app(TransformSettings()).openapi()["paths"]
    create = paths["/v1/transforms"]["post"]["responses"]["422"]
    assert any(str(MAX_RANGE_DAYS) in rule for rule in create[RULES_EXTENSION])
    assert str(MAX_RANGE_DAYS) in create["description"]
    assert paths["/v1/schemas"]["post"]["responses"]["422"][RULES_EXTENSION]
    # A route without such rules declares none: its 422 is only "does not match the schema".
    assert RULES_EXTENSION not in paths["/v1/transforms"]["get"]["responses"]["422"]


async def test_an_hour_out_of_range_is_the_documented_422(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for hour in (-1, 24, 300):
        response = await app_client.post("/v1/transforms", json={**BASE, "hour": hour}, headers=admin_headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "hour"
