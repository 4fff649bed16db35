"""The OpenAPI document integrators build on: method-like operation ids, the errors each route can return, scopes.

- Operation ids are the handler's name (``list_jobs``, ``get_traffic``), so a generated client reads naturally;
  two routes of one app may not share a handler name (checked when the document is built).
- Each operation lists only the errors it can return, all with the one JSON error schema: 401/403 where a key is
  required, 422 where it takes parameters or a body, plus what the route declares itself with
  ``responses=error_responses(404, 409, ...)`` (413/415/429 where they apply). Each error carries an example
  body; a declared error without a model still gets the error schema (every error goes through shared.errors).
- A rule JSON Schema cannot state (``end`` on or after ``start``, SQL that parses, a stream in the server's allow-list)
  is declared with ``responses=rule_responses(422, "...")``: the status says a request can match the schema and still
  be refused, the rules are listed in its description and in ``x-rules`` (what the schemathesis test accepts for
  schema-valid requests). A bound JSON Schema can state (minimum, maxLength, pattern, enum) belongs in the model.
- FastAPI's default validation schemas (HTTPValidationError, ValidationError) are dropped when unused: every
  422 is an ErrorResponse.
- The scope a route needs shows twice: in the operation's ``security`` requirement and as ``x-required-scope``.
- Versions come from the installed package's metadata.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

# The status -> ``code`` table of shared.errors' handlers: the documented examples show what they really send.
from shared.errors import _STATUS_CODES as ERROR_CODES
from shared.errors import ErrorResponse

ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "No API key, or an invalid or revoked one",
    403: "The key lacks the scope this route needs",
    404: "Not found",
    408: "The request took too long",
    409: "Conflict with the current state",
    410: "Gone: the route was retired (the message points to its replacement)",
    413: "Body larger than this route accepts",
    415: "Unsupported content type",
    422: "Invalid parameters or body (details say which field and why)",
    429: "Too many requests: retry after the Retry-After header",
    503: "A dependency is unavailable: retry after the Retry-After header",
}


ERROR_REF = "#/components/schemas/ErrorResponse"
# Response extension listing the rules beyond the schema that a status answers (see ``rule_responses``).
RULES_EXTENSION = "x-rules"


def headwater_version() -> str:
    """Return the installed package's version (the one version every service reports)."""
    try:
        return package_version("headwater")
    except PackageNotFoundError:  # running from a source tree without installing
        return "0+unknown"


def operation_id(route: APIRoute) -> str:
    """Use the handler's name as the operation id (``list_jobs``), so generated clients read as method names."""
    return route.name


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Document errors a route returns beyond the ones derived from its signature (auth, validation)."""
    return {code: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS.get(code, "Error")} for code in codes}


def rule_responses(code: int, *rules: str) -> dict[int | str, dict[str, Any]]:
    """Document that ``code`` also refuses schema-valid requests breaking ``rules`` (cross-field, server state)."""
    stated = "; ".join(rules)
    description = f"{ERROR_DESCRIPTIONS.get(code, 'Error')}; also for a rule the schema cannot state: {stated}"
    return {code: {"model": ErrorResponse, "description": description, RULES_EXTENSION: list(rules)}}


def error_example(code: int) -> dict[str, Any]:
    """Return an example error body for ``code`` in the one JSON shape."""
    details = [{"field": "limit", "reason": "Input should be less than or equal to 1000", "type": "less_than_equal"}]
    return {
        "error": {
            "code": ERROR_CODES.get(code, f"http_{code}"),
            "message": ERROR_DESCRIPTIONS.get(code, "Error"),
            "details": details if code == 422 else [],
        }
    }


def _error_content(code: int) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ERROR_REF}, "example": error_example(code)}}


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5") and status.isdigit()


def _complete_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    security = operation.get("security") or []
    scopes = sorted({scope for requirement in security for values in requirement.values() for scope in values})
    derived: list[int] = []
    if security:
        # 429: too many failed key checks for this key id or client (see shared.auth.KeyVerifier).
        derived += [401, 403, 429] if scopes else [401, 429]
    if "422" in responses or operation.get("parameters") or operation.get("requestBody"):
        derived.append(422)
    if operation.get("requestBody") or "x-max-body-bytes" in operation:
        derived.append(413)  # bodies FastAPI parses, and declared limits, are bounded by shared.guard
    for code in derived:
        declared = responses.get(str(code), {})
        rules = {RULES_EXTENSION: declared[RULES_EXTENSION]} if RULES_EXTENSION in declared else {}
        description = declared["description"] if rules else ERROR_DESCRIPTIONS[code]
        responses[str(code)] = {"description": description, "content": _error_content(code), **rules}
    # Every error the app answers goes through shared.errors' handlers, so a declared error without a body
    # model (``responses={410: {"description": ...}}``) still has the one JSON error shape: say so.
    for status, response in responses.items():
        if not _is_error(status):
            continue
        media = (response.get("content") or {}).get("application/json")
        if media is None or not media.get("schema"):
            response["content"] = _error_content(int(status))
        elif media["schema"].get("$ref") == ERROR_REF:
            media.setdefault("example", error_example(int(status)))
    if scopes:
        operation["x-required-scope"] = scopes[0] if len(scopes) == 1 else scopes


def _references(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_references(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_references(value) for value in node))
    return set()


def _drop_unused_validation_schemas(document: dict[str, Any]) -> None:
    # FastAPI adds these for its default 422 body; every 422 here is an ErrorResponse, so unless a route
    # really returns them they would only give generated clients two dead models.
    schemas = document.get("components", {}).get("schemas", {})
    candidates = {"HTTPValidationError", "ValidationError"} & set(schemas)
    kept = {key: value for key, value in schemas.items() if key not in candidates}
    used = _references({key: value for key, value in document.items() if key != "components"}) | _references(kept)
    for name in candidates:
        if f"#/components/schemas/{name}" not in used:
            del schemas[name]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Build (once) the app's OpenAPI document with the completions described in this module."""
    if app.openapi_schema:
        return app.openapi_schema
    names: dict[str, str] = {}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            if route.name in names and names[route.name] != route.path:
                raise RuntimeError(
                    f"two routes share the operation id {route.name!r}: {names[route.name]}, {route.path}"
                )
            names[route.name] = route.path
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorResponse" not in schemas:
        schemas.update(ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"])
        schemas["ErrorResponse"] = {
            key: value
            for key, value in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").items()
            if key != "$defs"
        }
    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                _complete_operation(operation)
    _drop_unused_validation_schemas(document)
    app.openapi_schema = document
    return document


def install_openapi(app: FastAPI) -> None:
    """Make the app serve the completed document at ``/openapi.json``."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
