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
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from telegen.assemble.routes import RouteResolver
from telegen.capture.layouts import HTTP_FLAG_HAS_RESPONSE, ROLE_SERVER
from telegen.decode.records import HttpExchange
from telegen.signals import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, Attributes, SpanRecord

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
LOCAL_MATCH_WAIT_NS = 1_000_000_000  # a server span with a local peer waits this long for its client:
# the client side of an idle keep-alive exchange can come one sweep (250 ms) plus a batch later
HEAD_CACHE_ENTRIES = 4096  # parsed heads by their raw bytes: load is mostly the same few requests
_ids = random.Random()  # span/trace ids need uniqueness, not secrecy: no syscall per span
_Tuple = tuple[str, int, str, int]  # client addr, client port, server addr, server port
# Optional L4 join: (4-tuple, is client side) -> (connect seconds or None, retransmits) or None.
ConnectionLookup = Callable[[_Tuple, bool], "tuple[float | None, int] | None"]


@dataclass(slots=True, frozen=True)
class _RequestFacts:
    """Everything a span needs from a request head, worked out once per distinct head."""

    head: RequestHead
    method: str  # semconv method or _OTHER
    path: str
    query: str
    host: str
    port_from_host: int
    user_agent: str
    trace_id: bytes  # from a valid traceparent, else b""
    parent_span_id: bytes


def _request_facts(raw: bytes) -> _RequestFacts:
    req = parse_request(raw)
    path, _, query = req.target.partition("?")
    if not path.startswith("/"):
        path = "/" + path if not path.startswith(("http://", "https://")) else \
            "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
    host, port_from_host = _split_host(req.headers.get("host", ""))
    trace_id = parent = b""
    if (tp := _TRACEPARENT.match(req.headers.get("traceparent", ""))) and tp.group(1) != "0" * 32:
        trace_id, parent = bytes.fromhex(tp.group(1)), bytes.fromhex(tp.group(2))
    return _RequestFacts(req, req.method if req.method in KNOWN_METHODS else "_OTHER", path, query, host,
                         port_from_host, req.headers.get("user-agent", "")[:256], trace_id, parent)


@dataclass(slots=True)
class _Pending:
    span: SpanRecord
    key: _Tuple
    deadline: float
    done: bool = False


MAX_PENDING = 20000
CLIENTS_PER_TUPLE = 256  # recent client spans kept per 4-tuple for matching


def _split_host(header: str) -> tuple[str, int]:
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
        self._requests: dict[bytes, _RequestFacts | str] = {}
        self._responses: dict[bytes, ResponseHead | str] = {}
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
        for ex in exchanges:
            span = self._span(ex, offset_ns)
            if span is None:
                continue
            if ex.role == ROLE_SERVER:
                key = (ex.peer_addr, ex.peer_port, ex.local_addr, ex.local_port)
                if self._link(span, key) or not self._is_local(key[0]):
                    ready.append(span)
                else:
                    self._wait(span, key, now)
            else:
                key = (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port)
                self._remember_client(span, key)
                ready.append(span)
                self._release_waiting(span, key, ready)
        self.spans_built += len(ready)
        return ready

    # Both sides are kept sorted by start time per 4-tuple, so a busy keep-alive connection
    # (hundreds of exchanges per batch) matches in O(log n) per span, not by scanning.

    def _wait(self, span: SpanRecord, key: _Tuple, now: float) -> None:
        pending = _Pending(span, key, now + LOCAL_MATCH_WAIT_NS / 1e9)
        bisect.insort(self._pending_by_key.setdefault(key, []), pending, key=_pending_start)
        self._pending_order.append(pending)

    def _release_waiting(self, client: SpanRecord, key: _Tuple, ready: list[SpanRecord]) -> None:
        """Server spans already waiting that fall inside this client span become its children."""
        waiting = self._pending_by_key.get(key)
        if not waiting:
            return
        i = bisect.bisect_left(waiting, client.start_ns, key=_pending_start)
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

    def _remember_client(self, span: SpanRecord, key: _Tuple) -> None:
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
        if len(entries) > CLIENTS_PER_TUPLE:
            del entries[:-CLIENTS_PER_TUPLE]

    def _link(self, span: SpanRecord, key: _Tuple) -> bool:
        """Parent a server span under the client span of the same call, if it was seen."""
        entries = self._clients.get(key)
        if not entries:
            return False
        start, end, trace_id, span_id = entries[-1]  # usually the newest client call is this one
        if start <= span.start_ns and span.end_ns <= end:
            span.trace_id, span.parent_span_id = trace_id, span_id
            return True
        i = bisect.bisect_right(entries, span.start_ns, key=_client_start)
        for start, end, trace_id, span_id in reversed(entries[max(0, i - 2):i]):
            if start <= span.start_ns and span.end_ns <= end:
                span.trace_id, span.parent_span_id = trace_id, span_id
                return True
        return False

    def _span(self, ex: HttpExchange, offset_ns: int) -> SpanRecord | None:
        facts = _cached(self._requests, ex.request, _request_facts)
        if isinstance(facts, str):
            self.decode_errors[facts] += 1
            return None
        req = facts.head
        resp = None
        if ex.flags & HTTP_FLAG_HAS_RESPONSE:
            got = _cached(self._responses, ex.response, parse_response)
            if isinstance(got, str):
                self.decode_errors[got] += 1
            else:
                resp = got
        server = ex.role == ROLE_SERVER
        path, query, method = facts.path, facts.query, facts.method
        host, port_from_host = facts.host, facts.port_from_host
        service_key = f"{ex.pid}" if server else f"{ex.pid}>{ex.peer_addr}:{ex.peer_port}"
        route = self.routes.route(path, service_key)
        attrs: Attributes = {
            "http.request.method": method,
            "url.path": path,
            "url.scheme": "http",
            "http.route": route,
            "network.protocol.version": req.version,
            "network.peer.address": ex.peer_addr,
            "network.peer.port": ex.peer_port,
        }
        if method == "_OTHER":
            attrs["http.request.method_original"] = req.method
        if query and self.capture_query:
            attrs["url.query"] = query[:1024]
        if server:
            attrs["server.address"] = host or ex.local_addr
            attrs["server.port"] = port_from_host or ex.local_port
            attrs["client.address"] = ex.peer_addr
            attrs["client.port"] = ex.peer_port
        else:
            attrs["server.address"] = host or ex.peer_addr
            attrs["server.port"] = port_from_host or ex.peer_port
        if self.connection_lookup is not None:
            key = ((ex.peer_addr, ex.peer_port, ex.local_addr, ex.local_port) if server
                   else (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port))
            if (tcp := self.connection_lookup(key, not server)) is not None:
                if tcp[0] is not None:
                    attrs["telegen.tcp.connect.duration"] = tcp[0]
                attrs["telegen.tcp.retransmits"] = tcp[1]
        if facts.user_agent:
            attrs["user_agent.original"] = facts.user_agent
        self._body_sizes(attrs, ex, req.head_length, req.headers, resp.head_length if resp else -1,
                         resp.headers if resp else {})
        status_code, status_message = 0, ""
        if resp is not None:
            attrs["http.response.status_code"] = resp.status
            if resp.status >= 500 or (not server and resp.status >= 400):
                attrs["error.type"] = str(resp.status)
                status_code = STATUS_ERROR
        else:
            attrs["error.type"] = "no_response" if not ex.flags & HTTP_FLAG_HAS_RESPONSE else "malformed_response"
            status_code, status_message = STATUS_ERROR, "no valid HTTP response seen"
        trace_id, parent = facts.trace_id or _ids.getrandbits(128).to_bytes(16, "big"), facts.parent_span_id
        return SpanRecord(
            trace_id=trace_id, span_id=_ids.getrandbits(64).to_bytes(8, "big"), parent_span_id=parent,
            name=f"{method} {route}", kind=SPAN_KIND_SERVER if server else SPAN_KIND_CLIENT,
            start_ns=ex.start_ns + offset_ns, end_ns=ex.end_ns + offset_ns, attributes=attrs,
            status_code=status_code, status_message=status_message, pid=ex.pid, cgroup_id=ex.cgroup_id,
            sample_weight=1000.0 / ex.sample_permille if ex.sample_permille else 1.0,
        )

    def _body_sizes(self, attrs: Attributes, ex: HttpExchange, req_head: int, req_headers: dict[str, str],
                    resp_head: int, resp_headers: dict[str, str]) -> None:
        """Body bytes: total minus the head when the head was captured whole, else Content-Length."""
        if req_head >= 0:
            attrs["http.request.body.size"] = max(0, ex.req_size - req_head)
        elif (length := self._declared_length(req_headers)) is not None:
            attrs["http.request.body.size"] = length
        if resp_head >= 0:
            attrs["http.response.body.size"] = max(0, ex.resp_size - resp_head)
        elif (length := self._declared_length(resp_headers)) is not None:
            attrs["http.response.body.size"] = length

    def _declared_length(self, headers: dict[str, str]) -> int | None:
        try:
            return content_length(headers)
        except DecodeError as err:
            self.decode_errors[err.kind] += 1
            return None


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


def _pending_start(pending: _Pending) -> int:
    return pending.span.start_ns


def _client_start(entry: tuple[int, int, bytes, bytes]) -> int:
    return entry[0]
