"""Every answer of replay has the documented shape (issue #13): /readyz's 503 its Readiness, any other the error."""

from __future__ import annotations

import asyncio

import httpx
import jsonschema
import pytest

from services.replay.app import create_app

ERROR_ANSWERS = [
    ("GET", "/v1/no-such-route", None, 404),
    ("DELETE", "/v1/query", None, 405),
    ("GET", "/static/no-such-file.js", None, 404),
    ("POST", "/v1/query", {"sql": "SELECT 1", "sources": ["/etc"]}, 422),
    ("POST", "/v1/query", {"sql": "SELECT 1", "start": "0001-01-01", "end": "0001-01-01"}, 422),
    ("POST", "/v1/query", {"sql": "DROP TABLE x"}, 400),
    ("GET", "/v1/replays/nope", None, 404),
]


def _schema(app, name: str) -> dict:
    document = app.openapi()
    return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}


def _documented(app, path: str, method: str, status: int) -> dict:
    responses = app.openapi()["paths"][path][method.lower()]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


@pytest.mark.parametrize(("method", "path", "body", "status"), ERROR_ANSWERS)
async def test_error_answers_have_the_error_shape(client, settings, method, path, body, status) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == status, response.text
    jsonschema.validate(response.json(), _schema(create_app(settings), "ErrorResponse"))


async def test_readyz_503_has_its_documented_shape(settings, aws) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        s3 = await aws.get("s3")
        await s3.delete_bucket(Bucket=settings.bucket("raw"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replay") as http:
            response = await asyncio.wait_for(http.get("/readyz"), 10)
    assert response.status_code == 503
    documented = _documented(app, "/readyz", "GET", 503)
    jsonschema.validate(response.json(), {**documented, "components": app.openapi()["components"]})
    assert response.json()["checks"]["raw_bucket"] != "ok"
    assert response.json()["status"] == "not_ready"
