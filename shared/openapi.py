"""The OpenAPI document integrators build on: method-like operation ids, the errors each route can return, scopes.

- Operation ids are the handler's name (``list_jobs``, ``get_traffic``), so a generated client reads naturally;
  two routes of one app may not share a handler name (checked when the document is built).
- Each operation lists only the errors it can return, all with the one JSON error schema: 401/403 where a key is
  required, 422 where it takes parameters or a body, plus what the route declares itself with
  ``responses=error_responses(404, 409, ...)`` (413/415/429 where they apply).
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


def _error_schema_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}


def _complete_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    security = operation.get("security") or []
    scopes = sorted({scope for requirement in security for values in requirement.values() for scope in values})
    derived: list[int] = []
    if security:
        derived += [401, 403] if scopes else [401]
    if "422" in responses or operation.get("parameters") or operation.get("requestBody"):
        derived.append(422)
    for code in derived:
        responses[str(code)] = {"description": ERROR_DESCRIPTIONS[code], "content": _error_schema_ref()}
    if scopes:
        operation["x-required-scope"] = scopes[0] if len(scopes) == 1 else scopes


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
    app.openapi_schema = document
    return document


def install_openapi(app: FastAPI) -> None:
    """Make the app serve the completed document at ``/openapi.json``."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
