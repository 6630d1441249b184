"""What a span takes from its exchange's bytes and endpoints, worked out once per distinct shape.

Load repeats itself: the same few requests and responses between the same processes, on
connections that differ only in the client's port. A shape is everything about a span that
follows from (request head, response head, role, pid, endpoints): name, route, constant
attributes, status, the RED attribute set and decode errors. The builder copies a shape's
attributes and adds the per-exchange values (peer port, body sizes, times, ids).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegen.assemble.http_parse import (
    KNOWN_METHODS,
    DecodeError,
    RequestHead,
    ResponseHead,
    content_length,
    parse_request,
    parse_response,
)
from telegen.assemble.routes import OVERFLOW_ROUTE, RouteResolver
from telegen.capture.layouts import HTTP_FLAG_HAS_RESPONSE
from telegen.decode.records import HttpExchange
from telegen.signals import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, Attributes, AttrValue

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
HEAD_CACHE_ENTRIES = 4096  # parsed heads by their raw bytes
SHAPE_CACHE_ENTRIES = 16384
# The low-cardinality set RED metrics are keyed by (semantic conventions).
METRIC_ATTRS = ("http.request.method", "http.response.status_code", "http.route", "url.scheme",
                "server.address", "server.port", "network.protocol.version", "error.type")
MetricAttrs = tuple[tuple[str, AttrValue], ...]
# What a span adds to its shape: (client port on a server span else -1, request body size,
# response body size (-1: not from the byte counts), the TCP join's (connect seconds, retransmits)).
VariantKey = tuple[int, int, int, "tuple[float | None, int] | None"]


@dataclass(slots=True, frozen=True)
class _RequestFacts:
    """Everything a span needs from a request head."""

    head: RequestHead
    method: str  # semconv method or _OTHER
    path: str
    query: str
    host: str
    port_from_host: int
    user_agent: str
    trace_id: bytes  # from a valid traceparent, else b""
    parent_span_id: bytes


@dataclass(slots=True, frozen=True)
class SpanShape:
    name: str
    kind: int
    attrs: Attributes  # constant for every exchange of this shape; copied per span
    metric_attrs: MetricAttrs
    status_code: int
    status_message: str
    trace_id: bytes  # from the request's traceparent, else b"" (a fresh trace per span)
    parent_span_id: bytes
    req_head: int  # head length when the whole head was captured, else -1
    resp_head: int
    errors: tuple[str, ...]  # decode errors, counted once per exchange of this shape
    overflow_service: str  # service whose route cap this shape's exchanges overflow, else ""
    # The shape's attributes completed with per-exchange values, by those values (VariantKey):
    # spans of one keep-alive connection share one dict (built by HttpSpanBuilder, bounded).
    variants: dict[VariantKey, Attributes] = field(default_factory=dict, compare=False)


def _request_facts(raw: bytes) -> _RequestFacts:
    req = parse_request(raw)
    path, _, query = req.target.partition("?")
    if not path.startswith("/"):
        path = "/" + path if not path.startswith(("http://", "https://")) else \
            "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    host, port_from_host = split_host(req.headers.get("host", ""))
    trace_id = parent = b""
    if (tp := _TRACEPARENT.match(req.headers.get("traceparent", ""))) and tp.group(1) != "0" * 32:
        trace_id, parent = bytes.fromhex(tp.group(1)), bytes.fromhex(tp.group(2))
    return _RequestFacts(req, req.method if req.method in KNOWN_METHODS else "_OTHER", path, query, host,
                         port_from_host, req.headers.get("user-agent", "")[:256], trace_id, parent)


def split_host(header: str) -> tuple[str, int]:
    """Host header to (host, port or 0): 'h', 'h:80', '[::1]:80' (brackets dropped)."""
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return header, 0
        host, rest = header[1:end], header[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif header.count(":") == 1:
        host, _, port_text = header.partition(":")
    else:
        return header, 0
    # isascii: str.isdigit() also accepts "²", which int() rejects
    if port_text.isascii() and port_text.isdigit() and 0 < int(port_text) <= 65535:
        return host, int(port_text)
    return host, 0


def _cached(cache: dict[bytes, Any], raw: bytes, parse: Callable[[bytes], Any]) -> Any:
    """parse(raw), or the DecodeError kind as a str; memoized by the raw bytes (bounded)."""
    got = cache.get(raw)
    if got is None:
        try:
            got = parse(raw)
        except DecodeError as err:
            got = err.kind
        if len(cache) >= HEAD_CACHE_ENTRIES:
            cache.clear()
        cache[raw] = got
    return got


def _declared(headers: dict[str, str], errors: list[str]) -> int | None:
    try:
        return content_length(headers)
    except DecodeError as err:
        errors.append(err.kind)
        return None


# (request, response or b"" when HTTP_FLAG_HAS_RESPONSE is not set, is server, pid, local addr,
# peer addr, server-side port: the local port of a server, the peer port of a client)
ShapeKey = tuple[bytes, bytes, bool, int, str, str, int]


class ShapeCache:
    """SpanShape per ShapeKey, or the decode-error kind (str) when the request is not HTTP."""

    def __init__(self, routes: RouteResolver, capture_query: bool = False) -> None:
        self.routes = routes
        self.capture_query = capture_query
        self._shapes: dict[ShapeKey, SpanShape | str] = {}
        self._requests: dict[bytes, _RequestFacts | str] = {}
        self._responses: dict[bytes, ResponseHead | str] = {}

    @property
    def known(self) -> dict[ShapeKey, SpanShape | str]:
        """The cache itself: the builder's batch loop looks each exchange up with a key it builds
        inline (ShapeKey) and calls add() on a miss. Cleared when full, never replaced."""
        return self._shapes

    def add(self, key: ShapeKey, ex: HttpExchange) -> SpanShape | str:
        if len(self._shapes) >= SHAPE_CACHE_ENTRIES:
            self._shapes.clear()
        shape = self._shapes[key] = self._shape(ex, key[2], bool(ex.flags & HTTP_FLAG_HAS_RESPONSE))
        return shape

    def _shape(self, ex: HttpExchange, server: bool, has_response: bool) -> SpanShape | str:
        facts = _cached(self._requests, ex.request, _request_facts)
        if isinstance(facts, str):
            return facts
        errors: list[str] = []
        resp: ResponseHead | None = None
        if has_response:
            got = _cached(self._responses, ex.response, parse_response)
            if isinstance(got, str):
                errors.append(got)
            else:
                resp = got
        req = facts.head
        method, host, port_from_host = facts.method, facts.host, facts.port_from_host
        service = f"{ex.pid}" if server else f"{ex.pid}>{ex.peer_addr}:{ex.peer_port}"
        route = self.routes.route(facts.path, service, count_overflow=False)  # counted per exchange
        attrs: Attributes = {
            "http.request.method": method,
            "url.path": facts.path,
            "url.scheme": "http",
            "http.route": route,
            "network.protocol.version": req.version,
            "network.peer.address": ex.peer_addr,
        }
        if method == "_OTHER":
            attrs["http.request.method_original"] = req.method
        if facts.query and self.capture_query:
            attrs["url.query"] = facts.query[:1024]
        if server:
            attrs["server.address"] = host or ex.local_addr
            attrs["server.port"] = port_from_host or ex.local_port
            attrs["client.address"] = ex.peer_addr
        else:
            attrs["server.address"] = host or ex.peer_addr
            attrs["server.port"] = port_from_host or ex.peer_port
            attrs["network.peer.port"] = ex.peer_port
        if facts.user_agent:
            attrs["user_agent.original"] = facts.user_agent
        # Body sizes: total minus the head when the head was captured whole (per exchange),
        # else the declared Content-Length (constant for the shape).
        if req.head_length < 0 and (length := _declared(req.headers, errors)) is not None:
            attrs["http.request.body.size"] = length
        resp_head = resp.head_length if resp is not None else -1
        if resp is not None and resp_head < 0 and (length := _declared(resp.headers, errors)) is not None:
            attrs["http.response.body.size"] = length
        status_code, status_message = STATUS_UNSET, ""
        if resp is not None:
            attrs["http.response.status_code"] = resp.status
            if resp.status >= 500 or (not server and resp.status >= 400):
                attrs["error.type"] = str(resp.status)
                status_code = STATUS_ERROR
        else:
            attrs["error.type"] = "malformed_response" if has_response else "no_response"
            status_code, status_message = STATUS_ERROR, "no valid HTTP response seen"
        return SpanShape(
            name=f"{method} {route}", kind=SPAN_KIND_SERVER if server else SPAN_KIND_CLIENT, attrs=attrs,
            metric_attrs=tuple([(k, attrs[k]) for k in METRIC_ATTRS if k in attrs]),
            status_code=status_code, status_message=status_message, trace_id=facts.trace_id,
            parent_span_id=facts.parent_span_id, req_head=req.head_length, resp_head=resp_head,
            errors=tuple(errors), overflow_service=service if route == OVERFLOW_ROUTE else "")
