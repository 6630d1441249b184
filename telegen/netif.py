"""Per-interface traffic for every network namespace (host + /var/run/netns/*) over netlink.

agent.ebpf.network.enabled. A MetricSource: each collection reads IFLA_STATS64 of every
link in every namespace with pyroute2 and reports the kernel's cumulative counters as the
system.network.* semantic-convention instruments, attributed by interface and namespace.
It also answers which addresses belong to this node (used to tell local peers from external).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from telegen.signals import AttrValue, MetricFamily, NumberPoint, Resource

log = logging.getLogger(__name__)
HOST_NS = "host"

# instrument -> (description, unit, [(stats64 key, direction)])
_INSTRUMENTS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "system.network.io": ("Bytes through the interface.", "By", (("rx_bytes", "receive"), ("tx_bytes", "transmit"))),
    "system.network.packets": ("Packets through the interface.", "{packet}",
                               (("rx_packets", "receive"), ("tx_packets", "transmit"))),
    "system.network.errors": ("Interface errors.", "{error}", (("rx_errors", "receive"), ("tx_errors", "transmit"))),
    "system.network.dropped": ("Packets dropped by the interface.", "{packet}",
                               (("rx_dropped", "receive"), ("tx_dropped", "transmit"))),
}


def _open(netns: str | None) -> Any:
    from pyroute2 import IPRoute  # imported lazily: only when the feature is on

    return IPRoute(netns=netns) if netns else IPRoute()


def read_namespace(netns: str | None) -> tuple[list[tuple[str, dict[str, int]]], set[str]]:
    """([(ifname, stats64)], addresses) of one namespace."""
    links: list[tuple[str, dict[str, int]]] = []
    addrs: set[str] = set()
    with _open(netns) as ipr:
        for link in ipr.get_links():
            stats = link.get_attr("IFLA_STATS64")
            if stats is None:
                continue
            links.append((str(link.get_attr("IFLA_IFNAME")), {k: int(v) for k, v in dict(stats).items()}))
        for addr in ipr.get_addr():
            if a := addr.get_attr("IFA_ADDRESS"):
                addrs.add(str(a))
    return links, addrs


class NetworkInterfaces:
    def __init__(self, resource: Resource = (), netns_dir: str | Path = "/var/run/netns",
                 min_interval: float = 1.0) -> None:
        self.resource = resource
        self.netns_dir = Path(netns_dir)
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._start_ns = time.time_ns()
        self._last: list[tuple[str, str, dict[str, int]]] = []
        self._addresses: frozenset[str] = frozenset()
        self._read_at = 0.0
        self.errors = 0

    def namespaces(self) -> list[str | None]:
        try:
            named = sorted(n for n in os.listdir(self.netns_dir) if not n.startswith("."))
        except OSError:
            named = []
        return [None, *named]

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < self.min_interval:
                return
            rows: list[tuple[str, str, dict[str, int]]] = []
            addresses: set[str] = set()
            for ns in self.namespaces():
                try:
                    links, addrs = read_namespace(str(self.netns_dir / ns) if ns else None)
                except Exception as exc:  # a namespace removed mid-read is normal churn
                    self.errors += 1
                    log.debug("reading network namespace %s: %s", ns or HOST_NS, exc)
                    continue
                rows += [(ns or HOST_NS, name, stats) for name, stats in links]
                if ns is None:
                    addresses = addrs
            self._last, self._addresses, self._read_at = rows, frozenset(addresses), time.monotonic()

    def local_addresses(self) -> frozenset[str]:
        """Addresses of the host namespace (refreshed at most every min_interval)."""
        return self._addresses

    def collect_metrics(self) -> list[MetricFamily]:
        self.refresh()
        out = []
        for name, (desc, unit, keys) in _INSTRUMENTS.items():
            fam = MetricFamily(name, desc, unit, "counter", self.resource, self._start_ns)
            for ns, ifname, stats in self._last:
                for key, direction in keys:
                    attrs: dict[str, AttrValue] = {"network.interface.name": ifname, "network.io.direction": direction,
                                                   "telegen.network.namespace": ns}
                    fam.points.append(NumberPoint(attrs, stats.get(key, 0)))
            out.append(fam)
        return out
