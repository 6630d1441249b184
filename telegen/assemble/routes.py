"""http.route from configured patterns, else a heuristic that folds ids; capped per service.

Raw paths never reach a metric: they are unbounded (ids, tokens) and would explode
cardinality. A per-service cap sends further distinct routes to one overflow route.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence

OVERFLOW_ROUTE = "/{overflow}"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{8,}$")
_DIGITS = re.compile(r"\d")


def _is_id(segment: str) -> bool:
    if _NUMBER.match(segment) or _UUID.match(segment) or _HEX.match(segment):
        return True
    # long opaque tokens (base64-ish, hashes, session ids) with digits in them
    return len(segment) >= 20 and bool(_DIGITS.search(segment)) and " " not in segment


def fold_path(path: str) -> str:
    segments = path.split("/")
    return "/".join("{id}" if seg and _is_id(seg) else seg for seg in segments) or "/"


class _Pattern:
    def __init__(self, pattern: str) -> None:
        self.route = pattern
        parts = []
        for seg in pattern.strip("/").split("/"):
            if seg.startswith("{") and seg.endswith("}"):
                parts.append("[^/]+")
            elif seg == "*":
                parts.append(".*")
            else:
                parts.append(re.escape(seg))
        self.regex = re.compile("^/" + "/".join(parts) + "/?$")


class RouteResolver:
    def __init__(self, patterns: Sequence[str], max_routes_per_service: int) -> None:
        self._patterns = [_Pattern(p) for p in patterns]
        self.max_routes = max_routes_per_service
        self._seen: dict[str, set[str]] = collections.defaultdict(set)
        self.overflowed: collections.Counter[str] = collections.Counter()
        self._memo: dict[str, str] = {}

    def route(self, path: str, service: str, count_overflow: bool = True) -> str:
        """The route for a path (query already removed) as seen by `service`. Callers that
        memoize the answer count later overflows themselves (count_overflow=False)."""
        route = self._memo.get(path)
        if route is None:
            route = next((p.route for p in self._patterns if p.regex.match(path)), None) or fold_path(path)
            if len(self._memo) < 65536:
                self._memo[path] = route
        seen = self._seen[service]
        if route in seen:
            return route
        if len(seen) >= self.max_routes:
            if count_overflow:
                self.overflowed[service] += 1
            return OVERFLOW_ROUTE
        seen.add(route)
        return route

    def known_routes(self) -> int:
        return sum(len(v) for v in self._seen.values())
