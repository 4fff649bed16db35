"""Schema registry API, built-in schemas at startup, and readiness."""

from __future__ import annotations

from typing import Any

import httpx

from services.transform.builtin_schemas import AD_EVENTS_V1, BUILTIN_SCHEMAS
from services.transform.settings import TransformSettings
from shared.schemas import parse_schema_yaml

CLICKS_V1 = """name: clicks
version: 1
columns:
  - {name: event_id, source: event_id, type: varchar(64), nullable: false}
  - {name: first_sku, source: "items[0].sku", type: varchar(32)}
  - {name: event_time, source: ts, type: timestamp, transform: epoch_millis_to_timestamp}
"""


async def _s3_text(s3: Any, bucket: str, key: str) -> str:
    response = await s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        return (await body.read()).decode()


async def test_builtin_schemas_are_registered_in_db_and_s3_at_startup(
    app_client: httpx.AsyncClient, read_headers: dict[str, str], s3: Any, settings: TransformSettings
) -> None:
    response = await app_client.get("/v1/schemas", headers=read_headers)

    assert response.status_code == 200
    listed = sorted((i["name"], i["version"]) for i in response.json()["items"])
    # The ad and meter tables, and one per generic analytics type (Segment/Snowplow: track, page, identify, ...).
    assert listed == sorted((name, 1) for name in BUILTIN_SCHEMAS)
    assert {"ad_events", "meter_reads", "track", "page", "identify"} <= {name for name, _ in listed}
    text = await _s3_text(s3, settings.bucket("curated"), "_schemas/ad_events/v1.yaml")
    assert parse_schema_yaml(text).partition_column == "dt"
    assert text == AD_EVENTS_V1


async def test_upload_registers_a_version_and_reupload_is_idempotent(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str], s3: Any, settings: TransformSettings
) -> None:
    headers = {**admin_headers, "Content-Type": "application/yaml"}
    created = await app_client.post("/v1/schemas", content=CLICKS_V1, headers=headers)
    again = await app_client.post("/v1/schemas", json={"yaml": CLICKS_V1}, headers=admin_headers)
    fetched = await app_client.get("/v1/schemas/clicks/1", headers=admin_headers)

    assert created.status_code == 201, created.text
    assert again.status_code == 200
    assert fetched.json()["definition"]["columns"][1]["source"] == "items[0].sku"
    assert fetched.json()["s3_uri"] == "s3://hw-curated/_schemas/clicks/v1.yaml"
    assert await _s3_text(s3, settings.bucket("curated"), "_schemas/clicks/v1.yaml") == CLICKS_V1


async def test_versions_are_immutable(app_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await app_client.post("/v1/schemas", json={"yaml": CLICKS_V1}, headers=admin_headers)

    changed = await app_client.post(
        "/v1/schemas", json={"yaml": CLICKS_V1.replace("varchar(32)", "varchar(64)")}, headers=admin_headers
    )

    assert changed.status_code == 409
    assert "immutable" in changed.json()["error"]["message"]


async def test_invalid_schema_answers_422_with_line_and_reason(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    bad = CLICKS_V1.replace("type: timestamp", "type: datetime")

    response = await app_client.post("/v1/schemas", json={"yaml": bad}, headers=admin_headers)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["line"] == 6
    assert "unsupported SQL type 'datetime'" in error["details"][0]["reason"]
    assert "line 6" in error["message"]


async def test_upload_needs_the_admin_scope(app_client: httpx.AsyncClient, read_headers: dict[str, str]) -> None:
    anonymous = await app_client.post("/v1/schemas", json={"yaml": CLICKS_V1})
    reader = await app_client.post("/v1/schemas", json={"yaml": CLICKS_V1}, headers=read_headers)

    assert (anonymous.status_code, reader.status_code) == (401, 403)


async def test_unknown_schema_version_is_404(app_client: httpx.AsyncClient, read_headers: dict[str, str]) -> None:
    response = await app_client.get("/v1/schemas/ad_events/9", headers=read_headers)

    assert response.status_code == 404


async def test_readyz_checks_redis_database_and_curated_bucket(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"redis": "ok", "database": "ok", "curated_bucket": "ok"}


async def test_readyz_fails_when_the_curated_bucket_is_missing(
    app_client: httpx.AsyncClient, s3: Any, settings: TransformSettings
) -> None:
    bucket = settings.bucket("curated")
    listing = await s3.list_objects_v2(Bucket=bucket)
    for item in listing.get("Contents", []):
        await s3.delete_object(Bucket=bucket, Key=item["Key"])
    await s3.delete_bucket(Bucket=bucket)

    response = await app_client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["curated_bucket"] != "ok"


async def test_the_old_page_redirects_to_the_console(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/ui/")

    assert response.status_code == 308
    assert response.headers["location"].endswith("/schemas")


async def test_every_route_is_documented_with_a_summary_and_a_response_schema(app_client: httpx.AsyncClient) -> None:
    spec = (await app_client.get("/openapi.json")).json()

    for path, operations in spec["paths"].items():
        if not path.startswith(("/v1/", "/api/")):
            continue
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            success = next(code for code in operation["responses"] if code.startswith("2"))
            content = operation["responses"][success]["content"]
            # JSON everywhere but the chains' live event stream (server-sent events).
            media = "text/event-stream" if path == "/v1/chains/events" else "application/json"
            assert content[media]["schema"], (method, path)
    assert "application/yaml" in spec["paths"]["/v1/schemas"]["post"]["requestBody"]["content"]
