"""The OpenAPI documents integrators build on (#12): committed and in step with the code, valid, and uniform.

Each rule is checked on the document every service serves; when one fails, the message lists each offending
operation. After changing routes, regenerate the committed specs with ``headwater openapi write``.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import socket
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from typer.testing import CliRunner

from headwater import openapi_cmd
from headwater.config import SERVICES
from headwater.openapi_cmd import SPEC_DIR, generate_spec, render_spec, spec_path, stale_specs, write_specs
from shared.auth import ReadScope
from shared.errors import ErrorResponse
from shared.openapi import error_responses, install_openapi, operation_id

OPERATIONS_PATHS = {"/healthz", "/readyz", "/metrics"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ERROR_REF = "#/components/schemas/ErrorResponse"
# First words that make an operation id read as a method call on a generated client (``client.list_jobs()``).
VERBS = {
    "get", "list", "create", "update", "replace", "delete", "post", "put", "upload", "download", "run", "preview",
    "cancel", "retry", "resubmit", "import", "export", "send", "query", "search", "count", "start", "stop",
    "pause", "resume", "trigger", "record", "track", "check",
}  # fmt: skip


@functools.cache
def spec(service: str) -> dict[str, Any]:
    """Return the document ``service`` serves (built once per test session)."""
    return generate_spec(service)


def operations(service: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Return (method, path, operation) for every operation of ``service``'s document."""
    return [
        (method.upper(), path, operation)
        for path, item in spec(service)["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (one level is all FastAPI emits)."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def schema_has_example(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Return whether a schema (followed through ``$ref``, and into ``items`` for a list) carries an example."""
    for node in (schema, resolve(document, schema)):
        if node.get("example") is not None or node.get("examples"):
            return True
    items = resolve(document, schema).get("items")
    # Documentation pages build a list's example from its item's example.
    return isinstance(items, dict) and schema_has_example(document, items)


def has_example(document: dict[str, Any], media: dict[str, Any]) -> bool:
    """Return whether a media type carries an example itself or through its schema."""
    if media.get("example") is not None or media.get("examples"):
        return True
    return schema_has_example(document, media.get("schema") or {})


@pytest.mark.parametrize("service", SERVICES)
def test_committed_spec_matches_the_code(service: str) -> None:
    path = spec_path(service)
    assert path.exists(), f"{path} is missing: run `headwater openapi write`"
    committed, generated = path.read_text(encoding="utf-8"), render_spec(spec(service))
    diff = "".join(
        list(difflib.unified_diff(committed.splitlines(True), generated.splitlines(True), "committed", "code"))[:60]
    )
    assert committed == generated, f"{path} differs from the code: run `headwater openapi write`\n{diff}"


@pytest.mark.parametrize("service", SERVICES)
def test_spec_is_valid_openapi(service: str) -> None:
    validate(spec(service))


@pytest.mark.parametrize("service", SERVICES)
def test_operation_ids_are_snake_case_and_unique(service: str) -> None:
    ids = [operation.get("operationId", "") for _, _, operation in operations(service)]
    assert [i for i in ids if not SNAKE_CASE.match(i)] == []
    assert sorted({i for i in ids if ids.count(i) > 1}) == []


@pytest.mark.parametrize("service", SERVICES)
def test_operation_ids_read_as_method_names(service: str) -> None:
    ids = [operation.get("operationId", "") for _, _, operation in operations(service)]
    nouns = [i for i in ids if i.split("_")[0] not in VERBS]
    assert nouns == [], f"{service}: operation ids that do not start with a verb: {nouns}"


@pytest.mark.parametrize("service", SERVICES)
def test_client_errors_use_the_error_schema(service: str) -> None:
    wrong = []
    for method, path, operation in operations(service):
        for status, response in operation.get("responses", {}).items():
            if not status.startswith("4"):
                continue
            content = response.get("content") or {}
            schema = (content.get("application/json") or {}).get("schema") or {}
            if set(content) != {"application/json"} or schema.get("$ref") != ERROR_REF:
                wrong.append(f"{method} {path} {status}")
    assert wrong == [], f"{service}: 4xx responses not documented with the ErrorResponse schema: {wrong}"


# Collection-like routes whose path parameter filters rather than names one thing: an unknown table counts 0 rows
# and an unknown ad has an empty series (tested behaviour in tests/loader), so they never answer 404.
NEVER_404 = {("GET", "/v1/warehouse/{table}/count"), ("GET", "/v1/advertising/traffic/{ad_id}")}


@pytest.mark.parametrize("service", SERVICES)
def test_operations_addressing_a_resource_document_404(service: str) -> None:
    # A path parameter names something that may not exist: the client must expect "not found".
    missing = [
        f"{method} {path}"
        for method, path, operation in operations(service)
        if "{" in path and "404" not in operation.get("responses", {}) and (method, path) not in NEVER_404
    ]
    assert missing == [], f"{service}: operations with a path parameter but no 404: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_public_operations_document_429(service: str) -> None:
    # Routes open without a key are rate-limited per client: say so, with the Retry-After contract.
    missing = [
        f"{method} {path}"
        for method, path, operation in operations(service)
        if path not in OPERATIONS_PATHS and not operation.get("security") and "429" not in operation["responses"]
    ]
    assert missing == [], f"{service}: public operations without a 429: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_secured_operations_name_their_scope(service: str) -> None:
    missing, mismatched = [], []
    for method, path, operation in operations(service):
        scopes = sorted({s for requirement in operation.get("security", []) for v in requirement.values() for s in v})
        if not operation.get("security"):
            continue
        declared = operation.get("x-required-scope")
        if not declared:
            missing.append(f"{method} {path}")
        elif sorted([declared] if isinstance(declared, str) else declared) != scopes:
            mismatched.append(f"{method} {path}: x-required-scope {declared} vs security {scopes}")
    assert missing == [], f"{service}: secured operations without x-required-scope: {missing}"
    assert mismatched == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_body_has_an_example(service: str) -> None:
    document = spec(service)
    missing = [
        f"{method} {path} ({media_type})"
        for method, path, operation in operations(service)
        for media_type, media in ((operation.get("requestBody") or {}).get("content") or {}).items()
        if not has_example(document, media)
    ]
    assert missing == [], f"{service}: request bodies without an example: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_main_responses_have_examples(service: str) -> None:
    # The success answer of each /v1 operation is what integrators read first: show one.
    document = spec(service)
    missing = [
        f"{method} {path} {status}"
        for method, path, operation in operations(service)
        if path.startswith("/v1/")
        for status, response in operation.get("responses", {}).items()
        if status.startswith("2")
        for media_type, media in (response.get("content") or {}).items()
        if media_type == "application/json" and not has_example(document, media)
    ]
    assert missing == [], f"{service}: success responses without an example: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_is_documented_as_plain_text(service: str) -> None:
    content = spec(service)["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/plain"}


@pytest.mark.parametrize("service", SERVICES)
def test_version_is_the_package_version(service: str) -> None:
    assert spec(service)["info"]["version"] == version("headwater")


@pytest.mark.parametrize("service", SERVICES)
def test_paths_are_versioned(service: str) -> None:
    # Seed-compatible aliases are served but left out of the schema: the published surface is /v1 only.
    # Paths an external protocol fixes (Snowplow's tp2 and /i) say so with x-external-protocol.
    unversioned = [
        path
        for path, item in spec(service)["paths"].items()
        if path not in OPERATIONS_PATHS
        and not path.startswith("/v1/")
        and not all("x-external-protocol" in operation for operation in item.values())
    ]
    assert unversioned == [], f"{service}: paths outside /v1 in the published spec: {unversioned}"


@pytest.mark.parametrize("service", SERVICES)
def test_validation_components_are_not_published(service: str) -> None:
    # Every 422 uses ErrorResponse, so FastAPI's default validation schemas would only confuse client generators.
    schemas = spec(service)["components"]["schemas"]
    assert {"HTTPValidationError", "ValidationError"} & set(schemas) == set()
    assert "ErrorResponse" in schemas


@pytest.mark.parametrize("service", SERVICES)
def test_building_the_app_for_its_spec_connects_nowhere(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"building {service}'s app tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert generate_spec(service)["paths"]


def test_spec_rendering_is_deterministic() -> None:
    text = render_spec({"b": 1, "a": {"d": [2, 1], "c": "é"}})
    assert text == '{\n  "a": {\n    "c": "é",\n    "d": [\n      2,\n      1\n    ]\n  },\n  "b": 1\n}\n'


def test_write_then_check_reports_only_the_changed_service(tmp_path: Path) -> None:
    service = "poller"
    changed, failed = write_specs(tmp_path, [service])
    assert failed == [] and changed == [tmp_path / f"{service}.json"]
    assert write_specs(tmp_path, [service]) == ([], [])  # unchanged files are not rewritten
    assert stale_specs(tmp_path, [service]) == {}
    document = json.loads((tmp_path / f"{service}.json").read_text())
    document["info"]["version"] = "0.0.0"
    (tmp_path / f"{service}.json").write_text(render_spec(document))
    assert list(stale_specs(tmp_path, [service])) == [service]


def test_openapi_check_exits_1_naming_every_stale_service(tmp_path: Path) -> None:
    result = CliRunner().invoke(openapi_cmd.app, ["check", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert sorted(json.loads(result.stdout)["stale"]) == sorted(SERVICES)


def test_the_headwater_command_has_the_openapi_group() -> None:
    from headwater.main import app as cli

    result = CliRunner().invoke(cli, ["openapi", "--help"])
    assert result.exit_code == 0, result.output
    assert "write" in result.output and "check" in result.output


def test_specs_are_committed_next_to_the_code() -> None:
    assert SPEC_DIR == Path(__file__).resolve().parents[2] / "docs" / "openapi"


def test_declared_errors_get_the_error_schema_with_an_example_and_validation_models_go() -> None:
    app = FastAPI(generate_unique_id_function=operation_id)
    install_openapi(app)

    @app.get("/v1/things/{thing_id}", responses={410: {"description": "retired"}, **error_responses(404)})
    async def get_thing(thing_id: int, who: ReadScope) -> dict[str, int]:
        return {"thing_id": thing_id}

    document = app.openapi()
    responses = document["paths"]["/v1/things/{thing_id}"]["get"]["responses"]
    # 429: a secured route refuses a client or key id after repeated failed key checks (shared.auth).
    assert sorted(responses) == ["200", "401", "403", "404", "410", "422", "429"]
    for status in ("401", "403", "404", "410", "422"):
        media = responses[status]["content"]["application/json"]
        assert media["schema"] == {"$ref": ERROR_REF}
        ErrorResponse.model_validate(media["example"])
    assert responses["422"]["content"]["application/json"]["example"]["error"]["code"] == "validation_error"
    assert responses["410"]["description"] == "retired"
    assert {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"]) == set()
