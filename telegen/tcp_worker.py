"""The TCP worker: connection records -> decode -> resource -> metrics, logs, topology, join index.

One thread, beside the HTTP processing worker (design.md section 5). Every second it also
reads the kernel's live-socket map for the active gauge and the L4<->L7 join.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from telegen.assemble.tcp import ConnectionIndex, TcpMetrics, log_records
from telegen.assemble.topology import Topology
from telegen.capture.stage import kernel_headers
from telegen.clock import MonotonicToWall
from telegen.decode.tcp_records import TcpConnection, TcpDecoder
from telegen.pipeline import BoundedQueue, QueueWorker
from telegen.signals import LogRecordItem, Resource

log = logging.getLogger(__name__)
BATCH = 4096


class TcpWorker(QueueWorker):
    name = "tcp"
    thread_name = "telegen-tcp"

    def __init__(self, records: BoundedQueue[bytes], decoder: TcpDecoder, metrics: TcpMetrics,
                 topology: Topology, index: ConnectionIndex, resource_for: Callable[[int, int], Resource],
                 enrich_logs: Callable[[list[LogRecordItem]], None],
                 submit_logs: Callable[[list[LogRecordItem]], None],
                 live: Callable[[], list[TcpConnection]] | None = None, live_interval: float = 1.0) -> None:
        super().__init__(records)
        self.decoder = decoder
        self.metrics = metrics
        self.topology = topology
        self.index = index
        self._resource_for = resource_for
        self._enrich_logs = enrich_logs
        self._submit_logs = submit_logs
        self._live = live
        self.live_interval = live_interval
        self.clock = MonotonicToWall()
        self.connections = 0
        self.logs = 0
        self.errors: collections.Counter[str] = collections.Counter()

    def _run(self) -> None:
        next_live = 0.0
        while not self._stop.is_set():
            batch = self.records.get_batch(BATCH, timeout=0.2)
            if batch:
                self.process(batch)
            now = time.monotonic()
            if self._live is not None and now >= next_live:
                self.refresh_live()
                next_live = now + self.live_interval
            self.last_progress = now
        while batch := self.records.get_batch(BATCH):
            self.process(batch)

    def _resources(self, conns: list[TcpConnection]) -> list[tuple[TcpConnection, Resource]]:
        memo: dict[tuple[int, int], Resource] = {}
        out = []
        for conn in conns:
            key = (conn.pid, conn.cgroup_id)
            res = memo.get(key)
            if res is None:
                res = memo[key] = self._resource_for(conn.pid, conn.cgroup_id) if conn.pid else ()
            out.append((conn, res))
        return out

    def process(self, batch: list[bytes]) -> None:
        """Errors stop here: a bad batch is counted and dropped."""
        try:
            conns = self.decoder.decode(batch)
            with_res = self._resources(conns)
            self.index.add(conns)
            self.metrics.observe(with_res)
            self.topology.observe_connections(with_res)
            logs = log_records(conns, self.clock.offset())
            if logs:
                self._enrich_logs(logs)
                self._submit_logs(logs)
            self.connections += len(conns)
            self.logs += len(logs)
        except Exception as exc:
            self.errors["tcp_processing"] += len(batch)
            log.exception("dropping a batch of %d TCP records: %s", len(batch), exc)

    def refresh_live(self) -> None:
        if self._live is None:
            return
        try:
            live = self._live()
            self.index.add(live)
            self.metrics.observe_live(self._resources(live))
        except Exception as exc:  # next second tries again
            self.errors["tcp_live_snapshot"] += 1
            log.warning("reading live TCP sockets failed: %s", exc)

    def healthy(self) -> tuple[bool, str]:
        if self.thread_died():
            return False, "TCP worker thread died"
        return True, ""

    def status(self) -> dict[str, Any]:
        return {"connections": self.connections, "log_records": self.logs, "queue": self.records.stats(),
                "errors": dict(self.errors), "metrics": self.metrics.stats(),
                "join": {"hits": self.index.hits, "misses": self.index.misses}}


class LocalAddresses:
    """The host namespace's addresses, re-read over netlink at most every `ttl` seconds."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self._addrs: frozenset[str] = frozenset()
        self._at = -1e9

    def __call__(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._at >= self.ttl:
            self._at = now
            try:
                from telegen.netif import read_namespace

                self._addrs = frozenset(read_namespace(None)[1])
            except Exception as exc:  # keep the last answer
                log.debug("reading local addresses: %s", exc)
        return self._addrs


def merge_ebpf_status(http: dict[str, Any] | None, tcp: dict[str, Any] | None) -> dict[str, Any] | None:
    """One /status/ebpf from the HTTP and TCP capture stages (programs, maps, ring buffers, loss)."""
    if tcp is None:
        return http
    if http is None:
        http = {"enabled": True, "kernel": {"release": os.uname().release, "btf": True, "kprobes": False,
                                            "headers": kernel_headers()},
                "programs": [], "maps": [], "ringbuf": {"size": 0, "events_received": 0, "events_lost": 0,
                                                        "lost_by_reason": {}, "dropped_in_agent": 0}}
    out = dict(http)
    out["programs"] = [*http["programs"], *tcp["programs"]]
    out["maps"] = [*http["maps"], *tcp["maps"]]
    ring, tring = dict(http["ringbuf"]), tcp["ringbuf"]
    for key in ("size", "events_received", "events_lost", "dropped_in_agent"):
        ring[key] = ring.get(key, 0) + tring.get(key, 0)
    ring["lost_by_reason"] = {**ring.get("lost_by_reason", {}), **tring["lost_by_reason"]}
    out["ringbuf"] = ring
    out["tcp"] = tcp["tcp"]
    if tcp.get("error") and not out.get("error"):
        out["error"] = tcp["error"]
    return out
