"""Check the API key before any body is read, and bound every body while it streams.

FastAPI reads and parses a route's body before it runs the route's dependencies, the key check among them: without
this guard, a request with no key can make a service buffer gigabytes. This pure-ASGI middleware runs first:

- it finds the route the request will reach; when that route needs a scope, it verifies the key (401/403/429)
  before a single body byte is read; the route's own dependency then finds the key in the verifier's cache;
- it refuses a body larger than the route's limit: at once when ``Content-Length`` says so, else while streaming
  (413). Routes whose body FastAPI parses are read here up to the limit and handed on.

A route whose body FastAPI parses is limited to ``max_request_body_bytes`` from settings unless it declares its own
with ``openapi_extra=body_limit(n)``, which also shows the limit in the OpenAPI document (``x-max-body-bytes``).
Routes that stream their body themselves (ingest's event paths, with limits from their own settings) are bounded
here only when they declare ``body_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import TooManyFailuresError, authorise, verifier_for
from shared.errors import error_response

BODY_LIMIT_KEY = "x-max-body-bytes"


def body_limit(max_bytes: int) -> dict[str, Any]:
    """Return ``openapi_extra`` that gives a route its own body limit (and documents it)."""
    return {BODY_LIMIT_KEY: max_bytes}


@dataclass(frozen=True)
class RouteRule:
    """What the guard enforces for one route."""

    scopes: tuple[str, ...]
    max_body_bytes: int | None
    parses_body: bool


class BodyTooLarge(Exception):
    """The body grew past the route's limit while streaming."""


def _scopes(dependant: Dependant) -> list[str]:
    found: list[str] = []
    for sub in dependant.dependencies:
        if sub.call is authorise:
            found += sub.own_oauth_scopes or []
        found += _scopes(sub)
    return found


class KeyFirstMiddleware:
    """Verify keys before bodies, and bound bodies per route (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, fastapi_app: FastAPI, default_max_body_bytes: int) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self.default_max_body_bytes = default_max_body_bytes
        self._rules: list[tuple[Any, RouteRule]] | None = None

    def _route_rules(self) -> list[tuple[Any, RouteRule]]:
        # Built on the first request: routers are included after the app (and this middleware) are created.
        if self._rules is None:
            rules = []
            for route in _api_routes(self.fastapi_app):
                if True:
                    default = self.default_max_body_bytes if route.body_field is not None else None
                    limit = (route.openapi_extra or {}).get(BODY_LIMIT_KEY, default)
                    rule = RouteRule(
                        tuple(dict.fromkeys(_scopes(route.dependant))), limit, route.body_field is not None
                    )
                    rules.append((route, rule))
            self._rules = rules
        return self._rules

    def _rule_for(self, scope: Scope) -> RouteRule | None:
        for route, rule in self._route_rules():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self._rule_for(scope)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.scopes:
            refusal = await self._check_key(scope, rule.scopes)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        limit = rule.max_body_bytes
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        if rule.parses_body:
            try:
                body = await _read_bounded(receive, limit)
            except BodyTooLarge:
                await _too_large(limit)(scope, receive, send)
                return
            await self.app(scope, _replay(body, receive), send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _bounded(receive, limit), tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(limit)(scope, receive, send)

    async def _check_key(self, scope: Scope, scopes: tuple[str, ...]) -> ASGIApp | None:
        header = dict(scope.get("headers") or ()).get(b"authorization", b"").decode("latin-1")
        kind, _, key = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if kind.lower() != "bearer" or not key.strip():
            return error_response(
                401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", None, challenge
            )
        client = (scope.get("client") or ("", 0))[0]
        try:
            principal = await verifier_for(self.fastapi_app.state).verify(key.strip(), client=client)
        except TooManyFailuresError as exc:
            return error_response(429, "rate_limited", exc.message, None, exc.headers)
        if principal is None:
            return error_response(401, "unauthorized", "invalid or revoked API key", None, challenge)
        for needed in scopes:
            if not principal.allows(needed):
                return error_response(403, "forbidden", f"this key lacks the '{needed}' scope")
        return None


def _api_routes(app: FastAPI) -> list[Any]:
    """Return the app's API routes as requests see them, routers included (newer FastAPI includes them lazily)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: included routes are plain APIRoutes
        return [route for route in app.routes if isinstance(route, APIRoute)]
    return [context for context in iter_route_contexts(app.routes) if isinstance(context.original_route, APIRoute)]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> ASGIApp:
    return error_response(413, "payload_too_large", f"request body larger than {limit} bytes")


async def _read_bounded(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _bounded(receive: Receive, limit: int) -> Receive:
    size = 0

    async def bounded() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                # The route streams its body itself: stop it here (the guard answers 413); the rest is never read.
                raise BodyTooLarge
        return message

    return bounded
