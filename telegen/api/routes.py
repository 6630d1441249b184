"""The route type and the table that resolves request paths (bare and /api/v1) to routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from telegen.api.context import ApiContext

API_PREFIX = "/api/v1"

Handler = Callable[[web.BaseRequest, "ApiContext"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    path: str  # canonical (bare) path; also served under API_PREFIX
    methods: Mapping[str, Handler]
    debug: bool = False  # exists only while self_telemetry.debug.enabled
    query: tuple[str, ...] = field(default=())  # query parameters this route reads

    def allowed(self) -> list[str]:
        """Methods for the Allow header: HEAD wherever GET is, OPTIONS everywhere (CORS)."""
        names = list(self.methods)
        if "GET" in names:
            names.append("HEAD")
        names.append("OPTIONS")
        return names

    def handler_for(self, method: str) -> Handler | None:
        if method == "HEAD":
            method = "GET"
        return self.methods.get(method)


def canonical(path: str) -> str:
    """The bare form of a path: '/api/v1/status' -> '/status'."""
    if path == API_PREFIX:
        return "/"
    if path.startswith(API_PREFIX + "/"):
        return path[len(API_PREFIX):]
    return path


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = {route.path: route for route in routes}

    def resolve(self, path: str, debug_enabled: bool) -> tuple[Route, str] | None:
        """(route, template) where template is the registered path matched (bounded label value)."""
        route = self._routes.get(canonical(path))
        if route is None or (route.debug and not debug_enabled):
            return None
        template = path if path.startswith(API_PREFIX + "/") else route.path
        return route, template

    def routes(self) -> list[Route]:
        return list(self._routes.values())

    def served_paths(self) -> list[tuple[str, Route]]:
        """Every path the server answers: each route bare and under the versioned prefix."""
        out: list[tuple[str, Route]] = []
        for route in self._routes.values():
            out.append((route.path, route))
            out.append((API_PREFIX + route.path, route))
        return out
