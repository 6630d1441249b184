"""The service map: edges between workloads over a sliding window, from TCP connections and HTTP spans.

Workloads are named from the enriched resource: Kubernetes owner, else pod, else container
name, else process name. Peers outside the node are `external/<ip>:<port>` (servers) or
`external/<ip>` (clients). A local peer is resolved at snapshot time through the listener
its port belongs to, learned from server-side connections and spans, so the order in which
the two sides arrive does not matter. Calls between two local workloads are counted from
the client side only, so nothing is counted twice.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from telegen.assemble.span_groups import SpanGroups
from telegen.decode.tcp_records import TcpConnection
from telegen.signals import SPAN_KIND_SERVER, STATUS_ERROR, Resource, SpanRecord

_random = random.random
WINDOW_SECONDS = 300
SAMPLES_PER_SECOND = 256  # per edge: reservoir for p50/p99
_OWNER_KINDS = (("k8s.deployment.name", "deployment"), ("k8s.statefulset.name", "statefulset"),
                ("k8s.daemonset.name", "daemonset"), ("k8s.cronjob.name", "cronjob"), ("k8s.job.name", "job"),
                ("k8s.replicaset.name", "replicaset"), ("k8s.pod.name", "pod"))
# raw target: ("node", id) | ("local", port) | ("external", "ip:port")
_Target = tuple[str, str | int]
_EdgeKey = tuple[str, _Target, int]


def workload(resource: Resource) -> dict[str, Any] | None:
    """{'id', 'kind'[, 'namespace']} for a resource, or None when nothing names it."""
    attrs = dict(resource)
    namespace = attrs.get("k8s.namespace.name")
    for key, kind in _OWNER_KINDS:
        if name := attrs.get(key):
            return {"id": f"{namespace}/{name}" if namespace else str(name), "kind": kind,
                    "namespace": namespace or ""}
    if name := attrs.get("container.name"):
        return {"id": str(name), "kind": "container"}
    if name := attrs.get("process.executable.name"):
        return {"id": str(name), "kind": "process"}
    return None


@dataclass
class _Agg:
    connections: int = 0
    requests: int = 0
    errors: int = 0
    seen: int = 0  # durations offered (the reservoir keeps SAMPLES_PER_SECOND of them)
    durations: list[float] = field(default_factory=list)

    def duration(self, ms: float) -> None:
        self.seen += 1
        if len(self.durations) < SAMPLES_PER_SECOND:
            self.durations.append(ms)
        else:
            j = int(_random() * self.seen)  # randrange's Python-level checks cost ~10x more
            if j < SAMPLES_PER_SECOND:
                self.durations[j] = ms

    def durations_of(self, values: list[float]) -> None:
        """duration() for each value: the free reservoir places in one extend, then sampling."""
        room = SAMPLES_PER_SECOND - len(self.durations)
        if room > 0:
            self.durations.extend(values[:room])
            self.seen += min(room, len(values))
            values = values[room:]
        for ms in values:
            self.duration(ms)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[idx], 3)


class Topology:
    def __init__(self, is_local: Callable[[str], bool], window: int = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.time, max_edges: int = 10000) -> None:
        self.is_local = is_local
        self.window = window
        self.max_edges = max_edges
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds: dict[int, dict[_EdgeKey, _Agg]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self._node_ids: dict[Resource, str | None] = {}
        self._listeners: dict[int, str] = {}  # local port -> workload id
        self.edges_dropped = 0

    def _agg(self, source: str, target: _Target, port: int) -> _Agg | None:
        sec = int(self._clock())
        bucket = self._seconds.get(sec)
        if bucket is None:
            bucket = self._seconds[sec] = {}
            for old in [s for s in self._seconds if s <= sec - self.window]:
                del self._seconds[old]
        key = (source, target, port)
        agg = bucket.get(key)
        if agg is None:
            if len(bucket) >= self.max_edges:
                self.edges_dropped += 1
                return None
            agg = bucket[key] = _Agg()
        return agg

    def _node(self, resource: Resource) -> str | None:
        # per span: resources repeat, so the workload name is worked out once per resource
        if resource in self._node_ids:
            return self._node_ids[resource]
        node = workload(resource)
        node_id: str | None = None
        if node is not None:
            node_id = str(node["id"])
            self._nodes[node_id] = node
        if len(self._node_ids) >= 65536:
            self._node_ids.clear()
        self._node_ids[resource] = node_id
        return node_id

    def _target(self, addr: str, port: int) -> _Target:
        return ("local", port) if self.is_local(addr) else ("external", f"{addr}:{port}")

    def observe_connections(self, conns: Iterable[tuple[TcpConnection, Resource]]) -> None:
        with self._lock:
            for conn, resource in conns:
                me = self._node(resource) if conn.pid else None
                if conn.client:
                    if me is None:
                        continue
                    agg = self._agg(me, self._target(conn.peer_addr, conn.peer_port), conn.peer_port)
                elif me is None:
                    continue
                else:
                    self._listeners[conn.local_port] = me
                    if self.is_local(conn.peer_addr):
                        continue  # the client side's own record counts this connection
                    agg = self._agg(f"external/{conn.peer_addr}", ("node", me), conn.local_port)
                if agg is not None:
                    agg.connections += 1
                    agg.errors += 1 if conn.failure else 0

    def observe_spans(self, spans: Iterable[SpanRecord]) -> None:
        self.observe_groups(SpanGroups(spans))

    def observe_groups(self, groups: SpanGroups) -> None:
        with self._lock:
            # Per batch: spans share resource objects and span shapes, and one shape fixes the
            # edge (peer, server port, and a client's peer port), so each group of spans is
            # resolved once and only bumps counters.
            nodes: dict[int, str | None] = {}
            edges: dict[tuple[str, bool, str, int, int], _Agg | None] = {}
            for key, group in groups.items():
                resource_key, _, kind = key
                first = group[0]
                me = nodes.get(resource_key, "")
                if me == "":
                    me = nodes[resource_key] = self._node(first.resource)
                if me is None:
                    continue
                attrs = first.attributes
                server = kind == SPAN_KIND_SERVER
                peer = str(attrs.get("network.peer.address", ""))
                # a server edge does not depend on the client's port (which varies inside a group)
                peer_port = 0 if server else int(attrs.get("network.peer.port", 0) or 0)
                server_port = int(attrs.get("server.port", 0) or 0)
                edge = (me, server, peer, peer_port, server_port)
                if edge in edges:
                    agg = edges[edge]
                else:
                    agg = edges[edge] = self._span_edge(me, server, peer, peer_port, server_port)
                if agg is None:
                    continue
                agg.requests += len(group)
                agg.errors += sum(1 for span in group if span.status_code == STATUS_ERROR)
                agg.durations_of([seconds * 1e3 for seconds in groups.durations(key)])

    def _span_edge(self, me: str, server: bool, peer: str, peer_port: int, server_port: int) -> _Agg | None:
        if server:
            if server_port and server_port not in self._listeners:
                self._listeners[server_port] = me
            if self.is_local(peer):
                return None  # counted from the client side
            return self._agg(f"external/{peer}", ("node", me), server_port)
        return self._agg(me, self._target(peer, peer_port), peer_port)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            oldest = int(self._clock()) - self.window
            merged: dict[tuple[str, str, int], _Agg] = {}
            for sec, bucket in self._seconds.items():
                if sec <= oldest:
                    continue
                for (source, (kind, value), port), agg in bucket.items():
                    if kind == "node":
                        target = str(value)
                    elif kind == "local":
                        target = self._listeners.get(int(value), f"local/{value}")
                    else:
                        target = f"external/{value}"
                    into = merged.setdefault((source, target, port), _Agg())
                    into.connections += agg.connections
                    into.requests += agg.requests
                    into.errors += agg.errors
                    into.durations.extend(agg.durations)
            node_ids: set[str] = set()
            edges = []
            for (source, target, port), agg in sorted(merged.items()):
                node_ids.update((source, target))
                edges.append({"source": source, "target": target, "port": port,
                              "protocol": "http" if agg.requests else "tcp", "connections": agg.connections,
                              "requests": agg.requests, "errors": agg.errors,
                              "p50_ms": _quantile(agg.durations, 0.5) if agg.durations else None,
                              "p99_ms": _quantile(agg.durations, 0.99) if agg.durations else None})
            nodes = []
            for nid in sorted(node_ids):
                node = self._nodes.get(nid) or {"id": nid, "kind": nid.split("/", 1)[0]
                                                if nid.startswith(("external/", "local/")) else "unknown"}
                nodes.append(dict(node))
        return {"nodes": nodes, "edges": edges, "window_seconds": self.window}
