"""Hostile input to transform's schema registry and transform routes (issue #13): every answer is a documented
4xx, a schema document cannot blow up on read, and a big upload cannot stall the service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pytest
import uvicorn

from services.transform.app import create_app
from services.transform.models import TransformRun
from services.transform.settings import TransformSettings
from shared.db import create_engine, session_factory
from tests.helpers import free_port, wait_until

ACCOUNT = "123456789012"

# 497 bytes of YAML whose aliases expand to millions of nodes (the "billion laughs").
ALIAS_BOMB = """\
name: bomb
version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
columns:
  - {name: event_id, source: event_id, type: varchar(64)}
description: *g
"""


def _schema(version: str) -> str:
    return f"name: big_version\nversion: {version}\ncolumns:\n  - {{name: a, source: a, type: integer}}\n"


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


async def test_integers_beyond_the_version_range_are_422(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for path in ("/v1/schemas/x/9223372036854775808", "/v1/schemas/x/99999999999999999999", "/v1/schemas/x/0"):
        response = await app_client.get(path, headers=admin_headers)
        assert response.status_code == 422, (path, response.text)
        _error(response)
    for version in ("1e20", "1.0e+20", "99999999999999999999", "9223372036854775808", "2147483648"):
        response = await app_client.post("/v1/schemas", json={"yaml": _schema(version)}, headers=admin_headers)
        assert response.status_code == 422, (version, response.text)
        assert _error(response)["details"][0]["field"] == "version"
    body = {"table": "ad_events", "version": 2**63, "source_path": "s3://hw-raw/beacon/dt={dt}/", "dt": "2026-11-24"}
    response = await app_client.post("/v1/transforms", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert _error(response)["details"][0]["field"] == "version"


async def test_a_yaml_alias_bomb_is_refused_at_once(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert len(ALIAS_BOMB) < 600
    started = time.perf_counter()
    response = await app_client.post(
        "/v1/schemas", content=ALIAS_BOMB, headers={**admin_headers, "Content-Type": "application/yaml"}
    )
    assert time.perf_counter() - started < 2
    assert response.status_code == 422, response.text
    error = _error(response)
    assert "alias" in error["message"] and error["details"][0]["line"] == 4


async def test_schema_uploads_are_bounded_and_say_so(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    spec = (await app_client.get("/openapi.json")).json()
    limit = spec["paths"]["/v1/schemas"]["post"]["x-max-body-bytes"]
    assert limit <= 1024 * 1024
    assert "413" in spec["paths"]["/v1/schemas"]["post"]["responses"]
    too_big = "#" * (limit + 1)
    declared = await app_client.post(
        "/v1/schemas", content=too_big, headers={**admin_headers, "Content-Type": "application/yaml"}
    )
    assert declared.status_code == 413 and _error(declared)["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(limit // 65536 + 2):
            yield b"#" * 65536

    streamed = await app_client.post(
        "/v1/schemas", content=chunks(), headers={**admin_headers, "Content-Type": "application/yaml"}
    )
    assert streamed.status_code == 413


@pytest.fixture
async def served(settings: TransformSettings) -> AsyncIterator[str]:
    """The transform app on a real port (requests then share the event loop as in production)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"

    async def _up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{base}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(_up, message="transform app did not start")
    yield base
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)


async def test_healthz_answers_quickly_during_a_big_upload(served: str, admin_headers: dict[str, str]) -> None:
    big = ("name: big\nversion: 1\ndescription: " + "x" * (10 * 1024 * 1024) + "\ncolumns: []\n").encode()
    async with httpx.AsyncClient(base_url=served, timeout=60) as http:

        async def _upload() -> int:
            headers = {**admin_headers, "Content-Type": "application/yaml"}
            try:
                return (await http.post("/v1/schemas", content=big, headers=headers)).status_code
            except httpx.TransportError:  # the server may answer 413 and close before the body is all sent
                return 413

        upload = asyncio.create_task(_upload())
        waits = []
        while not upload.done():  # ask all along the upload: some of these ask while the body is handled
            started = time.perf_counter()
            health = await http.get("/healthz")
            waits.append(time.perf_counter() - started)
            assert health.status_code == 200
        status = await upload
    assert waits and max(waits) < 1.0, f"/healthz waited {max(waits):.1f}s behind the upload"
    assert status == 413


def test_the_spec_declares_the_rules_of_a_transform_request() -> None:
    spec = create_app(TransformSettings()).openapi()
    create = spec["components"]["schemas"]["TransformCreate"]
    required = sorted(sorted(branch["required"]) for branch in create["oneOf"])
    assert required == [["dt"], ["end", "start"]]
    assert "366" in create["description"]
    version = spec["paths"]["/v1/schemas/{name}/{version}"]["get"]["parameters"]
    assert next(p for p in version if p["name"] == "version")["schema"]["maximum"] == 2**31 - 1
    assert create["properties"]["version"]["maximum"] == 2**31 - 1


async def test_transform_requests_break_no_declared_rule_and_the_server_agrees(
    app_client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    base = {"table": "nowhere", "version": 1, "source_path": "s3://hw-raw/beacon/dt={dt}/"}
    for body in (
        base,
        {**base, "dt": "2026-11-24", "start": "2026-11-20", "end": "2026-11-24"},
        {**base, "start": "2026-11-20"},
        {**base, "start": "2026-11-24", "end": "2026-11-20"},
        {**base, "start": "2025-01-01", "end": "2026-11-20"},
        {**base, "dt": "2026-11-24", "hour": "5"},
        {**base, "dt": "2026-11-24", "version": "1"},
        {**base, "dt": "2026-11-24", "source_path": "http://hw-raw/beacon/"},
    ):
        response = await app_client.post("/v1/transforms", json=body, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)
        _error(response)
    # Null is the same as absent: the declared oneOf and the server agree on it.
    response = await app_client.post(
        "/v1/transforms", json={**base, "dt": None, "start": None, "end": None}, headers=admin_headers
    )
    assert response.status_code == 422


async def test_run_errors_shown_by_the_api_do_not_reveal_the_aws_account(
    app_client: httpx.AsyncClient, settings: TransformSettings, read_headers: dict[str, str]
) -> None:
    error = f"ClientError: arn:aws:elasticmapreduce:eu-west-1:{ACCOUNT}:cluster/j-1 AccessDenied (account {ACCOUNT})"
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            session.add(
                TransformRun(
                    id="run-with-arn",
                    table_name="ad_events",
                    schema_version=1,
                    dt=date(2026, 11, 24),
                    source_bucket="hw-raw",
                    source_prefix="beacon/dt=2026-11-24/",
                    state="failed",
                    error=error,
                )
            )
            await session.commit()
    finally:
        await engine.dispose()
    one = await app_client.get("/v1/transforms/run-with-arn", headers=read_headers)
    listed = await app_client.get("/v1/transforms", headers=read_headers)
    for response in (one, listed):
        assert response.status_code == 200, response.text
        assert ACCOUNT not in response.text and "AccessDenied" in response.text
