"""HttpExchange batches to SERVER/CLIENT spans with semantic-convention attributes and trace links.

Trace context: a W3C traceparent in the request joins its trace. When both ends of a call
are on this node, the server span becomes the child of the matching client span (same
4-tuple, server inside the client's time window), so traces link across processes with no
header at all. Server spans from local peers wait briefly for their client's span.
"""

from __future__ import annotations

import bisect
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from telegen.assemble.http_shapes import ShapeCache, SpanShape
from telegen.assemble.routes import RouteResolver
from telegen.capture.layouts import ROLE_SERVER
from telegen.decode.records import HttpExchange
from telegen.signals import SpanRecord

LOCAL_MATCH_WAIT_NS = 1_000_000_000  # a server span with a local peer waits this long for its client:
# the client side of an idle keep-alive exchange can come one sweep (250 ms) plus a batch later
_ids = random.Random()  # span/trace ids need uniqueness, not secrecy: no syscall per span
_AFTER_ALL = float("inf")
_Tuple = tuple[str, int, str, int]  # client addr, client port, server addr, server port
# Optional L4 join: (4-tuple, is client side) -> (connect seconds or None, retransmits) or None.
ConnectionLookup = Callable[[_Tuple, bool], "tuple[float | None, int] | None"]


@dataclass(slots=True)
class _Pending:
    span: SpanRecord
    key: _Tuple
    deadline: float
    done: bool = False


MAX_PENDING = 20000
CLIENTS_PER_TUPLE = 256  # recent client spans kept per 4-tuple for matching


class HttpSpanBuilder:
    def __init__(self, routes: RouteResolver, capture_query: bool = False,
                 local_addresses: frozenset[str] = frozenset()) -> None:
        self.routes = routes
        self.capture_query = capture_query
        self.local_addresses = local_addresses | {"127.0.0.1", "::1"}
        self.decode_errors: collections.Counter[str] = collections.Counter()
        # Recent client spans by 4-tuple: (start, end, trace id, span id); bounded FIFO.
        self._clients: collections.OrderedDict[_Tuple, list[tuple[int, int, bytes, bytes]]] = \
            collections.OrderedDict()
        # Server spans waiting for their client: by 4-tuple (matched when the client arrives)
        # and in deadline order (released when they expire). Both O(1) per span.
        self._pending_by_key: dict[_Tuple, list[_Pending]] = {}
        self._pending_order: collections.deque[_Pending] = collections.deque()
        self.spans_built = 0
        self.shapes = ShapeCache(routes, capture_query)
        self.connection_lookup: ConnectionLookup | None = None

    def _is_local(self, addr: str) -> bool:
        return addr in self.local_addresses or addr.startswith("127.")

    def build(self, exchanges: list[HttpExchange], offset_ns: int) -> list[SpanRecord]:
        """Spans ready to export now (server spans from local peers may come in a later call)."""
        ready: list[SpanRecord] = []
        now = time.monotonic()
        # expire before adding: a new waiter always gets at least one more batch
        order = self._pending_order
        while order and (order[0].done or order[0].deadline <= now or len(order) > MAX_PENDING):
            pending = order.popleft()
            if not pending.done:
                pending.done = True
                ready.append(pending.span)  # no client seen in time: a root span
                self._forget_pending(pending)
        servers: list[tuple[SpanRecord, _Tuple]] = []
        touched: set[_Tuple] = set()
        for span, key, server in self._spans(exchanges, offset_ns):
            if server:
                servers.append((span, key))
            else:
                self._remember_client(span, key, touched)
                ready.append(span)
                self._release_waiting(span, key, ready)  # servers held from earlier batches
        # Servers after the batch's clients: most find their client in this same batch and
        # never enter the waiting structures.
        for span, key in servers:
            if self._link(span, key) or not self._is_local(key[0]):
                ready.append(span)
            else:
                self._wait(span, key, now)
        for key in touched:
            entries = self._clients.get(key)
            if entries is not None and len(entries) > CLIENTS_PER_TUPLE:
                del entries[:-CLIENTS_PER_TUPLE]
        self.spans_built += len(ready)
        return ready

    # Both sides are kept sorted by start time per 4-tuple, so a busy keep-alive connection
    # (hundreds of exchanges per batch) matches in O(log n) per span, not by scanning.

    def _wait(self, span: SpanRecord, key: _Tuple, now: float) -> None:
        pending = _Pending(span, key, now + LOCAL_MATCH_WAIT_NS / 1e9)
        waiting = self._pending_by_key.get(key)
        if waiting is None:
            self._pending_by_key[key] = [pending]
        elif waiting[-1].span.start_ns <= span.start_ns:
            waiting.append(pending)  # the usual order: no search
        else:
            bisect.insort(waiting, pending, key=_pending_start)
        self._pending_order.append(pending)

    def _release_waiting(self, client: SpanRecord, key: _Tuple, ready: list[SpanRecord]) -> None:
        """Server spans already waiting that fall inside this client span become its children."""
        waiting = self._pending_by_key.get(key)
        if not waiting:
            return
        if len(waiting) > 8:
            i = bisect.bisect_left(waiting, client.start_ns, key=_pending_start)
        else:  # usually one or two waiters: a scan beats bisect's Python key calls
            i = 0
            while i < len(waiting) and waiting[i].span.start_ns < client.start_ns:
                i += 1
        while i < len(waiting) and waiting[i].span.start_ns <= client.end_ns:
            pending = waiting[i]
            if not pending.done and pending.span.end_ns <= client.end_ns:
                pending.span.trace_id, pending.span.parent_span_id = client.trace_id, client.span_id
                pending.done = True
                ready.append(pending.span)
                del waiting[i]
            else:
                i += 1
        if not waiting:
            del self._pending_by_key[key]

    def _forget_pending(self, pending: _Pending) -> None:
        waiting = self._pending_by_key.get(pending.key)
        if waiting is None:
            return
        if waiting and waiting[0] is pending:
            del waiting[0]  # expiry goes oldest first: usually the head
        else:
            waiting[:] = [p for p in waiting if p is not pending]
        if not waiting:
            del self._pending_by_key[pending.key]

    def pending(self) -> list[SpanRecord]:
        """Everything held back (used at shutdown)."""
        out = [p.span for p in self._pending_order if not p.done]
        self._pending_order.clear()
        self._pending_by_key.clear()
        return out

    def _remember_client(self, span: SpanRecord, key: _Tuple, touched: set[_Tuple]) -> None:
        touched.add(key)  # trimmed to CLIENTS_PER_TUPLE after the batch's servers had their look
        entries = self._clients.get(key)
        if entries is None:
            entries = self._clients[key] = []
            while len(self._clients) > 50000:
                self._clients.popitem(last=False)
        entry = (span.start_ns, span.end_ns, span.trace_id, span.span_id)
        if not entries or entries[-1][0] <= span.start_ns:
            entries.append(entry)  # the usual order: no search
        else:
            bisect.insort(entries, entry)

    def _link(self, span: SpanRecord, key: _Tuple) -> bool:
        """Parent a server span under the client span of the same call, if it was seen."""
        entries = self._clients.get(key)
        if not entries:
            return False
        start, end, trace_id, span_id = entries[-1]  # usually the newest client call is this one
        if start <= span.start_ns and span.end_ns <= end:
            span.trace_id, span.parent_span_id = trace_id, span_id
            return True
        i = bisect.bisect_right(entries, (span.start_ns, _AFTER_ALL))  # tuples compare in C: no key calls
        for start, end, trace_id, span_id in reversed(entries[max(0, i - 2):i]):
            if start <= span.start_ns and span.end_ns <= end:
                span.trace_id, span.parent_span_id = trace_id, span_id
                return True
        return False

    def _spans(self, exchanges: list[HttpExchange], offset_ns: int) -> list[tuple[SpanRecord, _Tuple, bool]]:
        """(span, 4-tuple, is server) per exchange: its shape's constant part plus what differs."""
        out: list[tuple[SpanRecord, _Tuple, bool]] = []
        shape_of, errors, lookup = self.shapes.get, self.decode_errors, self.connection_lookup
        joined: dict[tuple[_Tuple, bool], tuple[float | None, int] | None] = {}  # L4 join per batch
        ids = _ids.randbytes(24 * len(exchanges))  # one call per batch: 16-byte trace + 8-byte span id each
        at = -24
        for ex in exchanges:
            at += 24
            shape = shape_of(ex)
            if isinstance(shape, str):
                errors[shape] += 1
                continue
            if shape.errors or shape.overflow_service:
                self._count_shape(shape)
            server = ex.role == ROLE_SERVER
            key = ((ex.peer_addr, ex.peer_port, ex.local_addr, ex.local_port) if server
                   else (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port))
            attrs = shape.attrs.copy()  # the per-exchange keys below are never in the shape (base_attrs)
            if server:  # the client's port differs per connection; a client span's peer port is in the shape
                attrs["network.peer.port"] = attrs["client.port"] = ex.peer_port
            if shape.req_head >= 0:
                attrs["http.request.body.size"] = max(0, ex.req_size - shape.req_head)
            if shape.resp_head >= 0:
                attrs["http.response.body.size"] = max(0, ex.resp_size - shape.resp_head)
            if lookup is not None:
                side = (key, server)
                if side in joined:  # keep-alive: a connection's exchanges share one lookup per batch
                    tcp = joined[side]
                else:
                    tcp = joined[side] = lookup(key, not server)
                if tcp is not None:
                    if tcp[0] is not None:
                        attrs["telegen.tcp.connect.duration"] = tcp[0]
                    attrs["telegen.tcp.retransmits"] = tcp[1]
            out.append((SpanRecord(
                shape.trace_id or ids[at:at + 16], ids[at + 16:at + 24], shape.parent_span_id, shape.name, shape.kind,
                ex.start_ns + offset_ns, ex.end_ns + offset_ns, attrs, (), shape.status_code, shape.status_message,
                ex.pid, ex.cgroup_id, 1000.0 / ex.sample_permille if ex.sample_permille else 1.0, shape.metric_attrs,
                shape.attrs), key, server))
        return out

    def _count_shape(self, shape: SpanShape) -> None:
        for kind in shape.errors:
            self.decode_errors[kind] += 1
        if shape.overflow_service:
            self.routes.overflowed[shape.overflow_service] += 1


def _pending_start(pending: _Pending) -> int:
    return pending.span.start_ns
