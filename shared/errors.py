"""One JSON error shape everywhere: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.logging import get_logger

log = get_logger(__name__)


class ErrorBody(BaseModel):
    """The body of an error response."""

    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer has this shape."""

    error: ErrorBody


class ApiError(Exception):
    """A domain error with an HTTP status; raise it from domain code, the handler shapes it."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class NotFoundError(ApiError):
    status_code = 404
    code = "not_found"


class ConflictError(ApiError):
    status_code = 409
    code = "conflict"


class UnprocessableError(ApiError):
    status_code = 422
    code = "validation_error"


class UnauthorizedError(ApiError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    status_code = 403
    code = "forbidden"


class TooManyRequestsError(ApiError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailableError(ApiError):
    status_code = 503
    code = "unavailable"


class GoneError(ApiError):
    status_code = 410
    code = "gone"


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build a JSON error response in the one shape."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """Turn pydantic/FastAPI validation errors into [{field, reason}] entries."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        details.append({"field": ".".join(loc) or "body", "reason": err.get("msg", "invalid"), "type": err.get("type")})
    return details


def allowed_methods(request: Request) -> str:
    """Return the ``Allow`` value of a 405: the methods of every route on the path, not only the first route's."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: included routes are plain routes
        routes: list[Any] = list(request.app.routes)
    else:
        routes = [context.route for context in iter_route_contexts(request.app.routes)]
    methods: set[str] = set()
    for route in routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the one JSON shape."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(exc.errors())
        fields = ", ".join(d["field"] for d in details)
        return error_response(422, "validation_error", f"invalid request: {fields}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 422 to a body that is not JSON but 400 to one that is not UTF-8: one rule, the 422.
            details = [{"field": "body", "reason": "the JSON body is not valid UTF-8", "type": "json_invalid"}]
            return error_response(422, "validation_error", "invalid request: body", details)
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; one route per method is FastAPI's way.
            headers = {**(headers or {}), "Allow": allowed_methods(_request) or (headers or {}).get("Allow", "")}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    async def _redis_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # Redis restarting (or a blip on the way to it) is a moment to retry, not a server bug: the request did
        # nothing durable, and redis-py reconnects on the next call.
        log.warning("redis_unavailable", error=type(exc).__name__)
        details = [{"field": "redis", "reason": type(exc).__name__}]
        return error_response(
            503, "unavailable", "a dependency (Redis) is unavailable; retry", details, {"Retry-After": "1"}
        )

    app.add_exception_handler(RedisConnectionError, _redis_unavailable)
    app.add_exception_handler(RedisTimeoutError, _redis_unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return error_response(500, "internal_error", "internal server error")
