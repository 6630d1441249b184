"""HttpExchange batches to SERVER/CLIENT spans with semantic-convention attributes and trace context.

Trace context comes from the kernel (link_call in bpf/http.bpf.c): each kept exchange carries
its span id and a trace id, and a server span whose client is a process on this node carries
that client call's span id as its parent and shares its trace, so traces link across processes
with no header and user space never matches spans. A W3C traceparent in the request joins the
trace it names; both ends see the same header, so they stay in one trace.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable

from telegen.assemble.http_shapes import ShapeCache, SpanShape
from telegen.assemble.routes import RouteResolver
from telegen.capture.layouts import ROLE_SERVER
from telegen.decode.records import HttpExchange
from telegen.signals import SpanRecord

_ids = random.Random()  # ids the kernel did not draw (never for captured traffic): uniqueness, not secrecy
_NO_SPAN_ID = bytes(8)
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
        shape_of, errors, lookup = self.shapes.get, self.decode_errors, self.connection_lookup
        joined: dict[tuple[_Tuple, bool], tuple[float | None, int] | None] = {}  # L4 join per batch
        for ex in exchanges:
            shape = shape_of(ex)
            if isinstance(shape, str):
                errors[shape] += 1
                continue
            if shape.errors or shape.overflow_service:
                self._count_shape(shape)
            server = ex.role == ROLE_SERVER
            attrs = shape.attrs.copy()  # the per-exchange keys below are never in the shape (base_attrs)
            if server:  # the client's port differs per connection; a client span's peer port is in the shape
                attrs["network.peer.port"] = attrs["client.port"] = ex.peer_port
            if shape.req_head >= 0:
                attrs["http.request.body.size"] = max(0, ex.req_size - shape.req_head)
            if shape.resp_head >= 0:
                attrs["http.response.body.size"] = max(0, ex.resp_size - shape.resp_head)
            if lookup is not None:
                key = ((ex.peer_addr, ex.peer_port, ex.local_addr, ex.local_port) if server
                       else (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port))
                side = (key, server)
                if side in joined:  # keep-alive: a connection's exchanges share one lookup per batch
                    tcp = joined[side]
                else:
                    tcp = joined[side] = lookup(key, not server)
                if tcp is not None:
                    if tcp[0] is not None:
                        attrs["telegen.tcp.connect.duration"] = tcp[0]
                    attrs["telegen.tcp.retransmits"] = tcp[1]
            span_id, trace_id, parent = ex.span_id, ex.trace_id, ex.parent_span_id
            if span_id == _NO_SPAN_ID or len(span_id) != 8 or len(trace_id) != 16:
                span_id, trace_id, parent = _ids.randbytes(8), _ids.randbytes(16), b""
            if shape.trace_id:  # the request's traceparent; a server's local client took it too
                trace_id = shape.trace_id
                if not parent:
                    parent = shape.parent_span_id
            append(SpanRecord(
                trace_id, span_id, parent, shape.name, shape.kind, ex.start_ns + offset_ns, ex.end_ns + offset_ns,
                attrs, (), shape.status_code, shape.status_message, ex.pid, ex.cgroup_id,
                1000.0 / ex.sample_permille if ex.sample_permille else 1.0, shape.metric_attrs, shape.attrs))
        return out

    def _count_shape(self, shape: SpanShape) -> None:
        for kind in shape.errors:
            self.decode_errors[kind] += 1
        if shape.overflow_service:
            self.routes.overflowed[shape.overflow_service] += 1
