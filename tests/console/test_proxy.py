"""The console's backend over real HTTP: the reverse proxy (headers, streaming both ways, errors), who-am-I, the shell's
deep links and log2schema. A small upstream app stands in for a service (it echoes what it receives)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from shared.auth import create_api_key
from shared.db import create_engine, create_tables, session_factory
from tests.browser import serve_console
from tests.helpers import free_port, wait_until


def upstream_app() -> FastAPI:
    """An upstream that reports what reached it."""
    app = FastAPI()
    app.state.received = 0
    app.state.release = asyncio.Event()

    @app.get("/readyz")
    async def readyz() -> dict[str, Any]:
        return {"status": "ready", "checks": {"redis": "ok"}}

    @app.get("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        return {"headers": dict(request.headers), "query": request.url.query, "path": request.url.path}

    @app.post("/count")
    async def count(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        async for chunk in request.stream():
            app.state.received += len(chunk)
            digest.update(chunk)
        return {"bytes": app.state.received, "sha256": digest.hexdigest()}

    @app.get("/received")
    async def received() -> dict[str, int]:
        return {"bytes": app.state.received}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b"first\n"
            await app.state.release.wait()
            yield b"second\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    @app.post("/release")
    async def release() -> dict[str, bool]:
        app.state.release.set()
        return {"released": True}

    @app.get("/cookies")
    async def cookies() -> Response:
        response = Response("ok")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    @app.get("/gzip")
    async def gzipped() -> Response:
        return Response(gzip.compress(b"x" * 10_000), headers={"Content-Encoding": "gzip"}, media_type="text/plain")

    return app


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: _started(server), message="upstream did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'meta.db'}"
    from shared.settings import HeadwaterSettings

    engine = create_engine(HeadwaterSettings(database_url=url))
    await create_tables(engine)
    await engine.dispose()
    return url


@pytest.fixture
async def keys(database_url: str) -> dict[str, str]:
    from shared.settings import HeadwaterSettings

    engine = create_engine(HeadwaterSettings(database_url=database_url))
    async with session_factory(engine)() as session:
        made = {
            "admin": await create_api_key(session=session, scopes=["admin"]),
            "reader": await create_api_key(session=session, scopes=["read", "replay:run"]),
        }
    await engine.dispose()
    return made


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[FastAPI, str]]:
    app = upstream_app()
    async with serve(app) as url:
        yield app, url


@pytest.fixture
async def console(upstream: tuple[FastAPI, str], database_url: str) -> AsyncIterator[str]:
    with socket.socket() as closed:  # a port nothing listens on: the "down" service
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    async with serve_console({"up": upstream[1], "down": down}, database_url) as url:
        yield url


async def test_end_to_end_headers_pass_and_hop_by_hop_ones_do_not(console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as http:
        response = await http.get(
            "/api/up/echo?a=1&b=two%20words",
            headers={
                "Authorization": "Bearer hw_x_y",
                "X-API-Key": "hw_k",
                "X-Trace": "t-1",
                "Proxy-Authorization": "Basic c2VjcmV0",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "only-for-the-next-hop",
            },
        )
    echoed = response.json()
    assert response.status_code == 200
    assert echoed["path"] == "/echo" and echoed["query"] == "a=1&b=two%20words"
    headers = echoed["headers"]
    assert (
        headers["authorization"] == "Bearer hw_x_y" and headers["x-api-key"] == "hw_k" and headers["x-trace"] == "t-1"
    )
    assert "proxy-authorization" not in headers and "x-hop" not in headers
    assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == console.removeprefix("http://")


async def test_a_request_body_reaches_the_service_while_it_is_still_being_sent(
    console: str, upstream: tuple[FastAPI, str]
) -> None:
    app, _ = upstream
    chunk = b"z" * 65536
    chunks = 320  # 20 MiB
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        digest.update(chunk)
        yield chunk
        # A buffering proxy would hold this first chunk until the body ends, and this wait would time out.
        await wait_until(lambda: _received_some(app), timeout=20, message="the first chunk was held back")
        for _ in range(chunks - 1):
            digest.update(chunk)
            yield chunk

    async with httpx.AsyncClient(base_url=console, timeout=60) as http:
        response = await http.post("/api/up/count", content=body())
    assert response.json() == {"bytes": len(chunk) * chunks, "sha256": digest.hexdigest()}


async def _received_some(app: FastAPI) -> bool:
    return app.state.received > 0


async def test_a_response_streams_to_the_browser_as_it_comes(console: str, upstream: tuple[FastAPI, str]) -> None:
    async with httpx.AsyncClient(base_url=console, timeout=20) as http:
        async with http.stream("GET", "/api/up/stream") as response:
            lines = response.aiter_lines()
            # The upstream has sent only its first line and waits: the proxy must have passed it on already.
            assert await asyncio.wait_for(anext(lines), timeout=10) == "first"
            await http.post(f"{upstream[1]}/release")
            assert await asyncio.wait_for(anext(lines), timeout=10) == "second"
        assert response.headers["content-type"].startswith("text/event-stream")


async def test_repeated_headers_and_encoded_bodies_pass_unchanged(console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as http:
        cookies = await http.get("/api/up/cookies")
        zipped = await http.get("/api/up/gzip")
    assert len(cookies.headers.get_list("set-cookie")) == 2
    assert zipped.headers["content-encoding"] == "gzip" and zipped.text == "x" * 10_000


async def test_a_service_that_does_not_answer_is_a_502_and_an_unknown_one_a_404(console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as http:
        down = await http.get("/api/down/v1/jobs")
        unknown = await http.get("/api/nope/v1/jobs")
    assert down.status_code == 502 and down.json()["error"]["code"] == "bad_gateway"
    assert unknown.status_code == 404 and "up, down" in unknown.json()["error"]["message"]


async def test_whoami_names_the_keys_scopes_and_refuses_a_wrong_key(console: str, keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=console) as http:
        reader = await http.get("/console/whoami", headers={"Authorization": f"Bearer {keys['reader']}"})
        by_header = await http.get("/console/whoami", headers={"X-API-Key": keys["admin"]})
        missing = await http.get("/console/whoami")
        wrong = await http.get("/console/whoami", headers={"Authorization": f"Bearer {keys['admin']}x"})
    assert reader.json()["scopes"] == ["read", "replay:run"]
    assert by_header.json()["scopes"] == ["admin"]
    assert missing.status_code == 401 and wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "unauthorized"


async def test_every_page_url_is_the_shell_and_the_files_are_served(console: str) -> None:
    async with httpx.AsyncClient(base_url=console) as http:
        deep = [await http.get(path) for path in ("/", "/jobs/12", "/replays/r-1", "/devices/0001", "/chains")]
        script = await http.get("/static/app.js")
        missing = await http.get("/console/nope")
        config = await http.get("/console/config")
    assert all(r.status_code == 200 and '<nav id="nav"' in r.text for r in deep)
    assert script.headers["content-type"].startswith("text/javascript")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert [s["name"] for s in config.json()["services"]] == ["up", "down"]


async def test_log2schema_proposes_a_schema_from_a_sample(console: str, keys: dict[str, str]) -> None:
    sample = b'{"ad_id": "a1", "ts": 1764460800000}\n{"ad_id": "a2", "ts": 1764460801000}\nnot json\n'
    auth = {"Authorization": f"Bearer {keys['reader']}"}
    async with httpx.AsyncClient(base_url=console) as http:
        proposed = await http.post("/console/log2schema?name=clicks&version=2", content=sample, headers=auth)
        nothing = await http.post("/console/log2schema", content=b"[1, 2]\n", headers=auth)
        anonymous = await http.post("/console/log2schema", content=sample)
    body = proposed.json()
    assert body["records"] == 2 and body["bad_lines"] == 1
    assert "name: clicks" in body["yaml"] and "version: 2" in body["yaml"] and "source: ad_id" in body["yaml"]
    assert nothing.status_code == 422 and nothing.json()["error"]["details"][0]["field"] == "file"
    assert anonymous.status_code == 401
