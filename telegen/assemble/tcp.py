"""TCP connection records -> cumulative metrics, log records, and the L4<->L7 join index.

Each closed or failed connection arrives once (one kernel record per socket); a live-socket
snapshot adds the active gauge and counts a connection as opened the first time it is seen
live, so a connection is opened exactly once whether it is still open or already closed.
Peers outside the node are folded once too many distinct ones are seen (bounded series).
"""

from __future__ import annotations

import bisect
import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from telegen.decode.tcp_records import TcpConnection
from telegen.signals import (
    AttrValue,
    HistogramPoint,
    LogRecordItem,
    MetricFamily,
    NumberPoint,
    Resource,
)

CONNECT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
LIFETIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
OTHER_PEER = "_other"
SEVERITY_INFO, SEVERITY_WARN = 9, 13

# name -> (description, unit, kind)
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "telegen.tcp.connections.opened": ("TCP connections established.", "{connection}", "counter"),
    "telegen.tcp.connections.failed": ("TCP connections that failed (connect failures and resets).",
                                       "{connection}", "counter"),
    "telegen.tcp.connections.active": ("TCP connections established and not yet closed.", "{connection}",
                                       "gauge"),
    "telegen.tcp.connect.duration": ("Time from SYN sent to ESTABLISHED, client side.", "s", "histogram"),
    "telegen.tcp.connection.duration": ("Time from ESTABLISHED to close.", "s", "histogram"),
    "telegen.tcp.bytes.sent": ("Payload bytes sent and acknowledged by the peer.", "By", "counter"),
    "telegen.tcp.bytes.received": ("Payload bytes received.", "By", "counter"),
    "telegen.tcp.retransmits": ("Retransmitted TCP segments.", "{segment}", "counter"),
    "telegen.tcp.resets": ("TCP resets sent or received.", "{reset}", "counter"),
}
_Key = tuple[str, Resource, tuple[tuple[str, AttrValue], ...]]
_Tuple = tuple[str, int, str, int]


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


class PeerFolder:
    """Keeps up to `max_peers` distinct external (address, port) pairs; the rest fold into '_other'."""

    def __init__(self, local_addresses: Callable[[], frozenset[str]] = frozenset, max_peers: int = 1000) -> None:
        self._local = local_addresses
        self.max_peers = max_peers
        self._seen: set[tuple[str, int]] = set()
        self.folded = 0

    def is_local(self, addr: str) -> bool:
        return is_loopback(addr) or addr in self._local()

    def fold(self, addr: str, port: int) -> tuple[str, int | None]:
        if self.is_local(addr) or (addr, port) in self._seen:
            return addr, port
        if len(self._seen) < self.max_peers:
            self._seen.add((addr, port))
            return addr, port
        self.folded += 1
        return OTHER_PEER, None


class _Hist:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0] * (n + 1)
        self.sum = 0.0
        self.count = 0


class TcpMetrics:
    """MetricSource for every telegen.tcp.* instrument (cumulative)."""

    def __init__(self, peers: PeerFolder | None = None, max_series: int = 20000) -> None:
        self.peers = peers or PeerFolder()
        self.max_series = max_series
        self.series_overflow = 0
        self._lock = threading.Lock()
        self._sums: dict[_Key, int] = {}
        self._hists: dict[_Key, _Hist] = {}
        self._active: dict[tuple[Resource, tuple[tuple[str, AttrValue], ...]], int] = {}
        self._opened: collections.OrderedDict[tuple[int, int], None] = collections.OrderedDict()
        self._start_ns = time.time_ns()

    def attributes(self, conn: TcpConnection) -> dict[str, AttrValue]:
        if conn.client:
            addr, port = self.peers.fold(conn.peer_addr, conn.peer_port)
            attrs: dict[str, AttrValue] = {"telegen.tcp.direction": "client", "server.address": addr}
            if port is not None:
                attrs["server.port"] = port
            return attrs
        return {"telegen.tcp.direction": "server", "server.port": conn.local_port}

    def _add(self, name: str, resource: Resource, attrs: dict[str, AttrValue], value: int) -> None:
        key = (name, resource, tuple(sorted(attrs.items())))
        if key not in self._sums and len(self._sums) + len(self._hists) >= self.max_series:
            self.series_overflow += 1
            return
        self._sums[key] = self._sums.get(key, 0) + value

    def _observe(self, name: str, resource: Resource, attrs: dict[str, AttrValue], value: float,
                 buckets: tuple[float, ...]) -> None:
        key = (name, resource, tuple(sorted(attrs.items())))
        hist = self._hists.get(key)
        if hist is None:
            if len(self._sums) + len(self._hists) >= self.max_series:
                self.series_overflow += 1
                return
            hist = self._hists[key] = _Hist(len(buckets))
        hist.counts[bisect.bisect_left(buckets, value)] += 1
        hist.sum += value
        hist.count += 1

    def _count_opened(self, conn: TcpConnection, resource: Resource, attrs: dict[str, AttrValue]) -> None:
        key = (conn.sock_id, conn.start_ns)
        if key in self._opened:
            return
        self._opened[key] = None
        while len(self._opened) > 200_000:
            self._opened.popitem(last=False)
        self._add("telegen.tcp.connections.opened", resource, attrs, 1)
        if (connect := conn.connect_ns) is not None:
            self._observe("telegen.tcp.connect.duration", resource, attrs, connect / 1e9, CONNECT_BUCKETS)

    def observe(self, conns: Iterable[tuple[TcpConnection, Resource]]) -> None:
        """Closed and failed connections, each exactly once."""
        with self._lock:
            for conn, resource in conns:
                attrs = self.attributes(conn)
                failure = conn.failure
                if conn.established_ns:
                    self._count_opened(conn, resource, attrs)
                    self._opened.pop((conn.sock_id, conn.start_ns), None)  # closed: the key may recur
                    self._observe("telegen.tcp.connection.duration", resource, attrs,
                                  max(0, conn.end_ns - conn.established_ns) / 1e9, LIFETIME_BUCKETS)
                    self._add("telegen.tcp.bytes.sent", resource, attrs, conn.bytes_sent)
                    self._add("telegen.tcp.bytes.received", resource, attrs, conn.bytes_received)
                if failure:
                    self._add("telegen.tcp.connections.failed", resource, {**attrs, "error.type": failure}, 1)
                if conn.retransmits:
                    self._add("telegen.tcp.retransmits", resource, attrs, conn.retransmits)
                if conn.resets_sent:
                    self._add("telegen.tcp.resets", resource, {**attrs, "telegen.tcp.reset.direction": "sent"},
                              conn.resets_sent)
                if conn.resets_received:
                    self._add("telegen.tcp.resets", resource,
                              {**attrs, "telegen.tcp.reset.direction": "received"}, conn.resets_received)

    def observe_live(self, conns: Iterable[tuple[TcpConnection, Resource]]) -> None:
        """A full snapshot of open connections: replaces the gauge, counts new ones as opened."""
        active: dict[tuple[Resource, tuple[tuple[str, AttrValue], ...]], int] = {}
        with self._lock:
            for conn, resource in conns:
                attrs = self.attributes(conn)
                self._count_opened(conn, resource, attrs)
                key = (resource, tuple(sorted(attrs.items())))
                active[key] = active.get(key, 0) + 1
            self._active = active

    def collect_metrics(self) -> list[MetricFamily]:
        families: dict[tuple[str, Resource], MetricFamily] = {}

        def family(name: str, resource: Resource) -> MetricFamily:
            fam = families.get((name, resource))
            if fam is None:
                desc, unit, kind = INSTRUMENTS[name]
                fam = families[(name, resource)] = MetricFamily(name, desc, unit, kind,  # type: ignore[arg-type]
                                                                resource, self._start_ns)
            return fam

        with self._lock:
            for (name, resource, attrs), value in self._sums.items():
                family(name, resource).points.append(NumberPoint(dict(attrs), value))
            for (name, resource, attrs), hist in self._hists.items():
                buckets = CONNECT_BUCKETS if name == "telegen.tcp.connect.duration" else LIFETIME_BUCKETS
                family(name, resource).points.append(
                    HistogramPoint(dict(attrs), buckets, list(hist.counts), hist.count, hist.sum))
            for (resource, attrs), n in self._active.items():
                family("telegen.tcp.connections.active", resource).points.append(NumberPoint(dict(attrs), n))
        return list(families.values())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"series": len(self._sums) + len(self._hists), "series_overflow": self.series_overflow,
                    "peers_folded": self.peers.folded}


def log_records(conns: Iterable[TcpConnection], offset_ns: int) -> list[LogRecordItem]:
    """Failed connects and resets (WARN), closes that saw retransmits (INFO)."""
    out: list[LogRecordItem] = []
    for conn in conns:
        failure = conn.failure
        if not failure and not conn.retransmits:
            continue
        client, cport, server, sport = conn.four_tuple()
        attrs: dict[str, AttrValue] = {
            "telegen.tcp.direction": "client" if conn.client else "server",
            "server.address": server, "server.port": sport, "client.address": client, "client.port": cport,
            "network.transport": "tcp", "telegen.tcp.retransmits": conn.retransmits,
            "telegen.tcp.resets.sent": conn.resets_sent, "telegen.tcp.resets.received": conn.resets_received,
        }
        if conn.error:
            attrs["telegen.tcp.errno"] = conn.error
        if failure:
            attrs["error.type"] = failure
        if conn.established_ns:
            attrs["telegen.tcp.connection.duration"] = max(0, conn.end_ns - conn.established_ns) / 1e9
            attrs["telegen.tcp.bytes.sent"] = conn.bytes_sent
            attrs["telegen.tcp.bytes.received"] = conn.bytes_received
            if conn.srtt_us:
                attrs["telegen.tcp.srtt"] = conn.srtt_us / 1e6
        if failure and not conn.established_ns:
            event, body = "telegen.tcp.connect.failed", f"TCP connect to {server}:{sport} failed: {failure}"
        elif failure:
            event, body = "telegen.tcp.reset", (f"TCP connection {client}:{cport} -> {server}:{sport} reset "
                                                f"({'sent' if conn.resets_sent else 'received'})")
        else:
            event, body = "telegen.tcp.retransmits", (f"TCP connection {client}:{cport} -> {server}:{sport} "
                                                      f"closed after {conn.retransmits} retransmits")
        severity = SEVERITY_WARN if failure else SEVERITY_INFO
        out.append(LogRecordItem(conn.end_ns + offset_ns, severity, "WARN" if failure else "INFO", body, attrs,
                                 event_name=event, pid=conn.pid, cgroup_id=conn.cgroup_id))
    return out


class ConnectionIndex:
    """Recent connections by 4-tuple and role, for HTTP spans: connect latency and retransmits.

    Closed connections come from records; open ones from the live snapshot, re-read on a miss
    (rate-limited by the snapshot's own max age).
    """

    def __init__(self, refresh: Callable[[], list[TcpConnection]] | None = None, capacity: int = 65536,
                 refresh_interval: float = 0.25) -> None:
        self._refresh = refresh
        self.refresh_interval = refresh_interval
        self._refreshed = -1e9
        self.capacity = capacity
        self._lock = threading.Lock()
        self._by_tuple: collections.OrderedDict[_Tuple, dict[bool, TcpConnection]] = collections.OrderedDict()
        self.hits = self.misses = 0

    def add(self, conns: Iterable[TcpConnection]) -> None:
        with self._lock:
            for conn in conns:
                key = conn.four_tuple()
                entry = self._by_tuple.get(key)
                if entry is None:
                    entry = self._by_tuple[key] = {}
                    while len(self._by_tuple) > self.capacity:
                        self._by_tuple.popitem(last=False)
                entry[conn.client] = conn

    def lookup(self, key: _Tuple, client: bool) -> tuple[float | None, int] | None:
        """(connect seconds or None, retransmits of the span's own side) for a 4-tuple."""
        # Single dict reads are atomic under the GIL, so hits take no lock; the lock and the
        # clock are only for the miss path.
        entry = self._by_tuple.get(key)
        if (entry is None or client not in entry) and self._refresh is not None:
            now = time.monotonic()
            if now - self._refreshed >= self.refresh_interval:
                self._refreshed = now  # a miss costs one map read per interval, not one per span
                self.add(self._refresh())
                entry = self._by_tuple.get(key)
        if not entry:
            self.misses += 1
            return None
        self.hits += 1
        client_side = entry.get(True)
        connect = client_side.connect_ns if client_side else None
        own = entry.get(client) or client_side or entry.get(not client)  # keys are only True/False
        if own is None:
            return None
        return (connect / 1e9 if connect is not None else None), own.retransmits

