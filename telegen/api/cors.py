"""CORS per the contract: echo an allowed origin with Vary, answer preflights 204 or 403."""

from __future__ import annotations

from aiohttp import web

from telegen.config import CorsConfig

PREFLIGHT_MAX_AGE = "600"


def allowed_origin(cors: CorsConfig, origin: str | None) -> str | None:
    """The value for Access-Control-Allow-Origin, or None when this origin gets no CORS headers."""
    if not cors.enabled or not origin:
        return None
    if origin in cors.allowed_origins:
        return origin
    if "*" in cors.allowed_origins:  # config validation keeps '*' away from auth
        return "*"
    return None


def is_preflight(request: web.BaseRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def decorate(response: web.StreamResponse, cors: CorsConfig, origin: str | None) -> None:
    """Add CORS headers to any answer (errors included) for an allowed origin."""
    if not cors.enabled:
        return
    response.headers["Vary"] = "Origin"
    value = allowed_origin(cors, origin)
    if value is not None:
        response.headers["Access-Control-Allow-Origin"] = value


def preflight_response(origin: str, methods: list[str]) -> web.Response:
    resp = web.Response(status=204)
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    resp.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    resp.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    resp.headers["Vary"] = "Origin"
    return resp
