"""HttpExchange batches to SERVER/CLIENT spans with semantic-convention attributes and trace context.

Trace context comes from the kernel (call_ids in bpf/http.bpf.c): each kept exchange carries
its span id and a trace id, and a server span whose client is a process on this node carries
that client call's span id as its parent and shares its trace, so traces link across processes
with no header and user space never matches spans. A W3C traceparent in the request joins the
trace it names; both ends see the same header, so they stay in one trace.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable

from telegen.assemble.http_shapes import ShapeCache, SpanShape, VariantKey
from telegen.assemble.routes import RouteResolver
from telegen.capture.layouts import HTTP_FLAG_HAS_RESPONSE, ROLE_SERVER
from telegen.decode.records import HttpExchange
from telegen.signals import Attributes, SpanRecord

_ids = random.Random()  # ids the kernel did not draw (never for captured traffic): uniqueness, not secrecy
_NO_SPAN_ID = bytes(8)
VARIANTS_PER_SHAPE = 1024
_Tuple = tuple[str, int, str, int]  # client addr, client port, server addr, server port
# Optional L4 join: (4-tuple, is client side) -> (connect seconds or None, retransmits) or None.
ConnectionLookup = Callable[[_Tuple, bool], "tuple[float | None, int] | None"]


class HttpSpanBuilder:
    def __init__(self, routes: RouteResolver, capture_query: bool = False) -> None:
        self.routes = routes
        self.capture_query = capture_query
        self.decode_errors: collections.Counter[str] = collections.Counter()
        self.spans_built = 0
        self.shapes = ShapeCache(routes, capture_query)
        self.connection_lookup: ConnectionLookup | None = None

    def build(self, exchanges: list[HttpExchange], offset_ns: int) -> list[SpanRecord]:
        """One span per exchange that parses as HTTP; the rest are counted by kind."""
        spans = self._spans(exchanges, offset_ns)
        self.spans_built += len(spans)
        return spans

    def _spans(self, exchanges: list[HttpExchange], offset_ns: int) -> list[SpanRecord]:
        """A span per exchange: its shape's constant part plus what differs per exchange."""
        out: list[SpanRecord] = []
        append = out.append
        errors, lookup = self.decode_errors, self.connection_lookup
        shapes, known = self.shapes, self.shapes.known
        joined: dict[tuple[_Tuple, bool], tuple[float | None, int] | None] = {}  # L4 join per batch
        for ex in exchanges:
            # one unpack, not a descriptor call per field read below
            (role, flags, pid, _tid, _fd, cgroup_id, start, _resp_start, end, req_size, resp_size, local_addr,
             peer_addr, local_port, peer_port, request, response, permille, trace_id, span_id, parent) = ex
            server = role == ROLE_SERVER
            key = (request, response if flags & HTTP_FLAG_HAS_RESPONSE else b"", server, pid, local_addr, peer_addr,
                   local_port if server else peer_port)  # ShapeKey
            shape = known.get(key)
            if shape is None:
                shape = shapes.add(key, ex)
            if isinstance(shape, str):
                errors[shape] += 1
                continue
            if shape.errors or shape.overflow_service:
                self._count_shape(shape)
            # Body sizes: total minus the head when the head was captured whole, else constant in
            # the shape (Content-Length) and -1 here.
            req_body = -1 if shape.req_head < 0 else req_size - shape.req_head if req_size > shape.req_head else 0
            resp_body = -1 if shape.resp_head < 0 else resp_size - shape.resp_head if resp_size > shape.resp_head else 0
            tcp = None
            if lookup is not None:
                tuple4 = ((peer_addr, peer_port, local_addr, local_port) if server
                          else (local_addr, local_port, peer_addr, peer_port))
                side = (tuple4, server)
                if side in joined:  # keep-alive: a connection's exchanges share one lookup per batch
                    tcp = joined[side]
                else:
                    tcp = joined[side] = lookup(tuple4, not server)
            # a client span's peer port is in its shape; a server span's differs per connection
            variant = (peer_port if server else -1, req_body, resp_body, tcp)
            attrs = shape.variants.get(variant)
            if attrs is None:
                attrs = _variant(shape, variant)
            if span_id == _NO_SPAN_ID or len(span_id) != 8 or len(trace_id) != 16:
                span_id, trace_id, parent = _ids.randbytes(8), _ids.randbytes(16), b""
            if shape.trace_id:  # the request's traceparent; a server's local client took it too
                trace_id = shape.trace_id
                if not parent:
                    parent = shape.parent_span_id
            append(SpanRecord(
                trace_id, span_id, parent, shape.name, shape.kind, start + offset_ns, end + offset_ns, attrs, (),
                shape.status_code, shape.status_message, pid, cgroup_id, 1000.0 / permille if permille else 1.0,
                shape.metric_attrs, attrs))
        return out

    def _count_shape(self, shape: SpanShape) -> None:
        for kind in shape.errors:
            self.decode_errors[kind] += 1
        if shape.overflow_service:
            self.routes.overflowed[shape.overflow_service] += 1


def _variant(shape: SpanShape, key: VariantKey) -> Attributes:
    """The shape's attributes plus one combination of per-exchange values, kept on the shape.

    Spans share the dict (and the encoder its bytes), so it is never changed once built:
    whoever rewrites a span's attributes gives the span a new dict (SpanRecord.attributes).
    """
    client_port, req_body, resp_body, tcp = key
    attrs = shape.attrs.copy()  # the keys below are never in the shape
    if client_port >= 0:
        attrs["network.peer.port"] = attrs["client.port"] = client_port
    if req_body >= 0:
        attrs["http.request.body.size"] = req_body
    if resp_body >= 0:
        attrs["http.response.body.size"] = resp_body
    if tcp is not None:
        if tcp[0] is not None:
            attrs["telegen.tcp.connect.duration"] = tcp[0]
        attrs["telegen.tcp.retransmits"] = tcp[1]
    if len(shape.variants) >= VARIANTS_PER_SHAPE:  # fresh connections: a new client port each
        shape.variants.clear()
    shape.variants[key] = attrs
    return attrs
