from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from shared.auth import Principal, create_api_key, require_scope, revoke_api_key
from shared.db import create_tables
from shared.errors import ConflictError
from shared.health import check_database, check_redis
from shared.http import create_service_app
from shared.wiring import Clients, wiring_lifespan


class Thing(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=0)


async def open_clients(settings: Any) -> Clients:
    clients = Clients(**Clients.base_kwargs(settings))
    await create_tables(clients.db_engine)
    return clients


def build_app(settings: Any) -> FastAPI:
    app = create_service_app(
        settings=settings,
        title="t",
        description="d",
        lifespan=wiring_lifespan(open_clients, settings),
        readiness_checks={"redis": check_redis, "database": check_database},
    )

    @app.post("/things", status_code=201)
    async def make_thing(thing: Thing, who: Principal = require_scope("jobs:admin")) -> dict[str, str]:
        if thing.name == "taken":
            raise ConflictError("a thing with that name exists", details=[{"field": "name", "reason": "taken"}])
        return {"name": thing.name, "by": who.key_id}

    return app


@pytest.fixture
async def client(make_settings: Callable[..., Any]) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(make_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


async def _key(client: httpx.AsyncClient, scopes: list[str]) -> str:
    async with client.app.state.wiring.sessions() as session:  # type: ignore[attr-defined]
        return await create_api_key(session=session, scopes=scopes)


async def test_validation_errors_name_the_field_and_reason(client: httpx.AsyncClient) -> None:
    key = await _key(client, ["jobs:admin"])
    response = await client.post("/things", json={"name": "", "count": -1}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {d["field"]: d["reason"] for d in error["details"]}
    assert set(fields) == {"name", "count"}
    assert "greater than or equal to 0" in fields["count"]


async def test_domain_errors_and_unknown_routes_share_the_one_shape(client: httpx.AsyncClient) -> None:
    key = await _key(client, ["admin"])
    conflict = await client.post(
        "/things", json={"name": "taken", "count": 1}, headers={"Authorization": f"Bearer {key}"}
    )
    assert conflict.status_code == 409
    assert conflict.json() == {
        "error": {
            "code": "conflict",
            "message": "a thing with that name exists",
            "details": [{"field": "name", "reason": "taken"}],
        }
    }
    missing = await client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_missing_bad_and_underscoped_keys_are_refused(client: httpx.AsyncClient) -> None:
    body = {"name": "a", "count": 1}
    no_key = await client.post("/things", json=body)
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"] == "Bearer"
    bad = await client.post("/things", json=body, headers={"Authorization": "Bearer hw_nope_nope"})
    assert bad.status_code == 401
    read_only = await _key(client, ["read"])
    forbidden = await client.post("/things", json=body, headers={"Authorization": f"Bearer {read_only}"})
    assert forbidden.status_code == 403
    assert "jobs:admin" in forbidden.json()["error"]["message"]
    good = await _key(client, ["jobs:admin"])
    created = await client.post("/things", json=body, headers={"Authorization": f"Bearer {good}"})
    assert created.status_code == 201
    assert created.json()["by"] == good.split("_")[1]


async def test_keys_are_stored_hashed_and_revocation_works(client: httpx.AsyncClient) -> None:
    from shared.auth import ApiKey

    key = await _key(client, ["jobs:admin"])
    key_id = key.split("_")[1]
    async with client.app.state.wiring.sessions() as session:  # type: ignore[attr-defined]
        row = await session.get(ApiKey, key_id)
        assert row is not None
        assert key not in row.key_hash and row.key_hash.startswith("$argon2")
        assert await revoke_api_key(session=session, key_id=key_id)
    client.app.state.key_verifier = None  # drop the short verification cache  # type: ignore[attr-defined]
    response = await client.post("/things", json={"name": "a", "count": 1}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


async def test_health_ready_and_metrics_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "database": "ok"}
    await client.get("/healthz")
    metrics = (await client.get("/metrics")).text
    assert 'headwater_http_requests_total{method="GET",route="/healthz",service="headwater",status="200"}' in metrics


async def test_readyz_answers_503_when_a_dependency_is_down(make_settings: Callable[..., Any]) -> None:
    app = build_app(make_settings(redis_url="redis://127.0.0.1:1/0", readiness_timeout_s=1.0))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] != "ok"
    assert response.json()["checks"]["database"] == "ok"


async def test_a_burst_of_requests_with_one_key_verifies_it_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import shared.auth as auth

    calls: list[str] = []
    real = auth._matches

    def counting(key_hash: str, key: str) -> bool:
        calls.append(key)
        return real(key_hash, key)

    monkeypatch.setattr(auth, "_matches", counting)
    key = await _key(client, ["jobs:admin"])
    headers = {"Authorization": f"Bearer {key}"}
    responses = await asyncio.gather(
        *(client.post("/things", json={"name": f"n{i}", "count": i}, headers=headers) for i in range(20))
    )
    assert [r.status_code for r in responses] == [201] * 20
    assert calls == [key]


def test_the_scope_a_route_needs_is_in_the_openapi_document(make_settings: Callable[..., Any]) -> None:
    document = build_app(make_settings()).openapi()
    operation = document["paths"]["/things"]["post"]
    assert operation["operationId"] == "make_thing"
    assert operation["x-required-scope"] == "jobs:admin"
    assert operation["security"] == [{"HTTPBearer": ["jobs:admin"]}]
    # Only the errors this route can return: auth (401/403, 429 after repeated failures), validation (422) and the
    # body bound (413), in the one error shape.
    errors = {code for code in operation["responses"] if code.startswith(("4", "5"))}
    assert errors == {"401", "403", "413", "422", "429"}
    assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


class CountingBody:
    """A chunked request body that counts how much of it the server pulled."""

    def __init__(self, chunks: int, chunk_size: int = 64 * 1024) -> None:
        self.chunks, self.chunk_size, self.pulled = chunks, chunk_size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += self.chunk_size
            yield b" " * self.chunk_size


async def test_a_body_without_a_key_is_refused_before_it_is_read(client: httpx.AsyncClient) -> None:
    body = CountingBody(chunks=16_000)  # 1 GiB if it were read
    response = await client.post("/things", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert body.pulled <= body.chunk_size, f"{body.pulled} bytes were read before the key was checked"


async def test_bodies_beyond_the_route_limit_get_413_while_streaming(
    client: httpx.AsyncClient, make_settings: Callable[..., Any]
) -> None:
    key = await _key(client, ["jobs:admin"])
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limit = make_settings().max_request_body_bytes
    declared = await client.post("/things", content=b"x" * (limit + 1), headers=auth)
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"
    body = CountingBody(chunks=1_000)  # 64 MiB, no Content-Length
    streamed = await client.post("/things", content=body, headers=auth)
    assert streamed.status_code == 413
    assert body.pulled <= limit + body.chunk_size
    ok = await client.post("/things", json={"name": "a", "count": 1}, headers=auth)
    assert ok.status_code == 201


async def test_failed_key_checks_are_bounded_and_unknown_ids_cost_the_same(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.auth as auth

    hashed: list[str] = []
    real_matches = auth._matches

    def counting(key_hash: str, key: str) -> bool:
        hashed.append(key)
        return real_matches(key_hash, key)

    monkeypatch.setattr(auth, "_matches", counting)
    key = await _key(client, ["jobs:admin"])
    key_id = key.split("_")[1]
    body = {"name": "a", "count": 1}
    unknown = await client.post("/things", json=body, headers={"Authorization": "Bearer hw_ffffffffffff_nope"})
    assert unknown.status_code == 401
    assert hashed == ["hw_ffffffffffff_nope"], "an unknown key id must cost an argon2 run like a known one"
    answers = []
    for attempt in range(auth.FAILURE_LIMIT + 5):
        wrong = f"hw_{key_id}_wrong{attempt}"
        answers.append(await client.post("/things", json=body, headers={"Authorization": f"Bearer {wrong}"}))
    codes = [answer.status_code for answer in answers]
    assert codes[: auth.FAILURE_LIMIT - 1] == [401] * (auth.FAILURE_LIMIT - 1)
    assert codes[-5:] == [429] * 5
    assert answers[-1].headers["Retry-After"].isdigit()
    # Limited attempts never reach argon2, and a repeated wrong key is answered from the negative cache.
    assert len(hashed) == auth.FAILURE_LIMIT
    hashed.clear()
    again = await client.post("/things", json=body, headers={"Authorization": "Bearer hw_ffffffffffff_nope"})
    assert again.status_code in (401, 429)
    assert hashed == []


async def test_redis_down_during_a_request_is_503_with_retry_after(make_settings: Callable[..., Any]) -> None:
    # Found by the chaos scenario "Redis restarted": a request in flight when Redis went away answered 500.
    from redis.asyncio import Redis

    from tests.helpers import free_port

    app = build_app(make_settings())
    gone = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)  # nothing listens there

    @app.get("/needs-redis")
    async def needs_redis() -> dict[str, bool]:
        return {"pong": bool(await gone.ping())}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.get("/needs-redis")
    await gone.aclose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"
