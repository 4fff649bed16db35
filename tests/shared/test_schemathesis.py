"""schemathesis fuzzes every service's OpenAPI document (#13): no server error, every answer as documented.

Each service gets a throwaway app (test settings on the session's moto, this suite's Redis db and a fresh SQLite
file) served by uvicorn on a free port in a thread of its own, and a key holding every scope. schemathesis (v4)
then runs as ``schemathesis run --checks all --seed SEED --max-examples N`` would: the engine the CLI drives
(``schemathesis.engine.from_schema``), every phase (examples, coverage, fuzzing, stateful), every check. The test
fails on any failed check or engine error and lists each one with its operation, status and a curl to replay it.
Every service is enforced: nothing is marked as an expected failure.

A schema-valid request may still be refused for a rule JSON Schema cannot state (``end`` after ``start``, SQL that
runs, a stream in the server's allow-list): the route declares that status with ``shared.openapi.rule_responses``
(listed under ``x-rules``), and only for that operation and status does positive_data_acceptance accept it. A bound
the schema can state belongs in the model instead; a 5xx or an undeclared status is always a failure.

Budget: ``HEADWATER_FUZZ_EXAMPLES`` (examples per operation and phase) and ``HEADWATER_FUZZ_SEED`` change the run;
the defaults (5 examples, seed 13) take 1 to 3 minutes for the five services on two cores, by load (replay 20-50 s,
ingest 12-40 s, poller 10-15 s, loader 7-20 s, transform 6-20 s); each run's summary names its slowest operations.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from schemathesis.config._checks import (
    NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
)
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import EngineFinished, FatalError, NonFatalError, ScenarioFinished

from headwater.config import SERVICES
from headwater.openapi_cmd import SPEC_DIR
from headwater.setup_steps import import_all_models
from shared.auth import SCOPES, create_api_key
from shared.db import create_engine, create_tables, session_factory
from shared.errors import install_error_handlers
from shared.openapi import RULES_EXTENSION, install_openapi, rule_responses
from shared.settings import HeadwaterSettings
from tests.helpers import free_port, wait_until_sync

SEED = int(os.environ.get("HEADWATER_FUZZ_SEED", "13"))
MAX_EXAMPLES = int(os.environ.get("HEADWATER_FUZZ_EXAMPLES", "5"))
# A check that fails this many times in one run stops it: the report is already long enough to act on.
MAX_FAILURES = 200


@schemathesis.serializer("application/x-ndjson")
def _json_lines(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Send a JSON-lines body (the poller's device import) as the text the schema generates, or one line of JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode("utf-8")


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: schemathesis.Case) -> bool:
    """Drop "wrong type" bodies for JSON lines: on the wire such a body is text, whatever was generated."""
    return not (case.media_type == "application/x-ndjson" and not isinstance(case.body, str | bytes))


def _settings_class(service: str) -> type[HeadwaterSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    return next(
        v for k, v in vars(module).items() if k.endswith("Settings") and getattr(v, "__module__", "") == module.__name__
    )


async def _all_scopes_key(settings: HeadwaterSettings) -> str:
    """Create every table of the mesh in the test's SQLite file and return a key holding every scope."""
    import_all_models()
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            return await create_api_key(session=session, scopes=list(SCOPES), name="schemathesis")
    finally:
        await engine.dispose()


@asynccontextmanager
async def served(service: str, settings: HeadwaterSettings) -> AsyncIterator[str]:
    """Serve ``service``'s app on a free port in a thread; yield its base URL once it is ready."""
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=10
    )
    # A thread with its own event loop (uvicorn installs no signal handlers there): the fuzzer blocks this one.
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{service}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def _ready() -> bool:
        if not thread.is_alive():
            raise AssertionError(f"{service} stopped while starting")
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    await asyncio.to_thread(wait_until_sync, _ready, timeout=60, message=f"{service} not ready")
    try:
        yield url
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)


@dataclass
class FuzzReport:
    """What one schemathesis run did and found."""

    requests: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""
    seconds: float = 0.0
    # Seconds per phase and operation (generation and requests): where the run's time goes.
    waited: Counter[str] = field(default_factory=Counter)

    def summary(self, service: str) -> str:
        """Return one line with the run's numbers (and the operations the run waited on most)."""
        slowest = ", ".join(f"{label} {seconds:.0f} s" for label, seconds in self.waited.most_common(3))
        return (
            f"{service}: {self.requests} requests, {sum(self.checks.values())} checks, "
            f"{len(self.failures)} distinct failures, {len(self.errors)} errors, {self.seconds:.0f} s "
            f"(seed {SEED}, {MAX_EXAMPLES} examples, stop: {self.stop_reason}; slowest: {slowest})"
        )


def _record(report: FuzzReport, event: ScenarioFinished) -> None:
    recorder = event.recorder
    report.requests += len(recorder.interactions)
    report.waited[f"{event.phase.name.lower()} {recorder.label}"] += event.elapsed_time
    for case_id, nodes in recorder.checks.items():
        for node in nodes:
            report.checks[node.name] += 1
            if node.status != Status.FAILURE or node.failure_info is None:
                continue
            failure = node.failure_info.failure
            interaction = recorder.interactions.get(case_id)
            status = interaction.response.status_code if interaction and interaction.response else "-"
            key = (recorder.label, node.name, failure.title)
            report.failures.setdefault(
                key,
                f"{recorder.label} [{node.name}] {failure.title} (status {status})\n"
                f"    {failure.message.strip()[:600]}\n    {node.failure_info.code_sample}",
            )


# A body beyond a route's documented limit (x-max-body-bytes) is refused with the documented 413.
POSITIVE_STATUSES = [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "413"]


def rule_overrides(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Per operation, also accept for schema-valid requests the statuses it declares for rules beyond the schema.

    A route that refuses requests matching its schema for a rule JSON Schema cannot state (``end`` after ``start``,
    SQL that runs, a stream in the allow-list) declares that status with ``shared.openapi.rule_responses``, which
    lists the rules under ``x-rules``. Only that operation, and only that status, is accepted for positive data;
    everything else (5xx, undeclared statuses, wrong bodies) is still a failure.
    """
    overrides = []
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            statuses = [status for status, response in operation["responses"].items() if RULES_EXTENSION in response]
            if statuses:
                overrides.append(
                    {
                        "include-operation-id": operation["operationId"],
                        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_STATUSES, *statuses]}},
                    }
                )
    return overrides


def fuzz(url: str, key: str) -> FuzzReport:
    """Run every schemathesis phase and check against the document ``url`` serves; return what it found."""
    document = httpx.get(f"{url}/openapi.json", timeout=30).raise_for_status().json()
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "max-failures": MAX_FAILURES,
            "base-url": url,
            "headers": {"Authorization": f"Bearer {key}"},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "checks": {
                "negative_data_rejection": {"expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]},
                "positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES},
            },
            "operations": rule_overrides(document),
            "request-timeout": 20,
            # An event stream (transform's /v1/chains/events) stays open: it sends its first event at once, then one
            # only on a change (keep-alives between), so reading a second one waited for the request timeout on every
            # request (250 of the transform run's 275 s). The first event shows the stream's shape.
            "max-stream-events": 1,
            "workers": 1,
        }
    )
    config.projects.override.checks.update(included_check_names=["all"])
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    report = FuzzReport()
    started = time.monotonic()
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished):
            _record(report, event)
        elif isinstance(event, NonFatalError):
            report.errors.append(f"{event.label}: {event.info.title}: {event.info.message}"[:800])
        elif isinstance(event, FatalError):
            report.errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, EngineFinished):
            report.stop_reason = str(event.stop_reason)
    report.seconds = time.monotonic() - started
    return report


@pytest.mark.fuzz
@pytest.mark.timeout(600)
@pytest.mark.parametrize("service", SERVICES)
async def test_schemathesis_finds_nothing(
    service: str, make_settings: Callable[..., Any], bootstrapped: Any, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(_settings_class(service))
    key = await _all_scopes_key(settings)
    async with served(service, settings) as url:
        report = await asyncio.to_thread(fuzz, url, key)
    # The numbers go to the terminal even when the test passes (capsys would leave loggers on a closed file).
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(f"\n{report.summary(service)}")
    found = [*report.errors, *report.failures.values()]
    assert not found, report.summary(service) + "\n" + "\n".join(found)


# What the first runs found in shared code, pinned without the fuzzer.

# Field constraints as pydantic names them; in a JSON Schema they are unknown keywords that constrain nothing.
PYDANTIC_ONLY_KEYWORDS = {"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of", "max_digits"}


class Thing(BaseModel):
    """A body FastAPI parses."""

    name: str = "x"


def _small_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter(prefix="/v1")

    @router.post("/things")
    async def create_thing(thing: Thing) -> Thing:
        return thing

    @router.get("/things")
    async def list_things() -> list[Thing]:
        return []

    @router.put("/things/{name}")
    async def update_thing(name: str, thing: Thing) -> Thing:
        return thing

    @router.delete("/things/{name}")
    async def delete_thing(name: str) -> None:
        return None

    app.include_router(router)
    return app


async def test_405_allows_every_method_of_the_path() -> None:
    transport = httpx.ASGITransport(app=_small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        collection = await client.options("/v1/things")
        item = await client.patch("/v1/things/a")
    assert collection.status_code == 405 and collection.headers["allow"] == "GET, POST"
    assert item.status_code == 405 and item.headers["allow"] == "DELETE, PUT"
    assert item.json()["error"]["code"] == "method_not_allowed"


async def test_a_json_body_that_is_not_utf8_is_the_documented_422() -> None:
    transport = httpx.ASGITransport(app=_small_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.put(
            "/v1/things/a", content=b"\x1b\xef\x1eM\xef", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "body"


def test_rule_responses_keep_their_rules_in_the_completed_document() -> None:
    app = FastAPI()
    install_openapi(app)

    @app.post("/things", responses=rule_responses(422, "`end` on or after `start`"))
    async def create_thing(thing: Thing) -> Thing:
        return thing

    declared = app.openapi()["paths"]["/things"]["post"]["responses"]["422"]
    assert declared[RULES_EXTENSION] == ["`end` on or after `start`"]
    assert declared["description"].endswith("`end` on or after `start`")
    assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_only_the_declared_rule_statuses_of_an_operation_are_accepted_for_valid_data() -> None:
    document = {
        "paths": {
            "/a": {
                "post": {"operationId": "with_rules", "responses": {"400": {RULES_EXTENSION: ["x"]}, "422": {}}},
                "get": {"operationId": "without_rules", "responses": {"422": {}}},
            }
        }
    }
    [override] = rule_overrides(document)
    assert override["include-operation-id"] == "with_rules"
    accepted = override["checks"]["positive_data_acceptance"]["expected-statuses"]
    assert "400" in accepted and "422" not in accepted


def test_no_committed_spec_states_a_bound_as_an_unknown_keyword() -> None:
    """A pydantic bound on an Optional with a validator was written as ``"ge": 0`` (transform's ``hour``): JSON
    Schema ignores it, so the spec did not state the bound and schemathesis sent 300 as a valid hour."""
    leaked: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                leaked.extend(f"{where}: {key}" for key in PYDANTIC_ONLY_KEYWORDS & set(node))
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    for path in sorted(SPEC_DIR.glob("*.json")):
        walk(json.loads(path.read_text()), path.name)
    assert not leaked, leaked
