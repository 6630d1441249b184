"""Metadata misses per source, exposed as telegen_metadata_misses_total{source} at scrape time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

SOURCES = ("procfs", "cgroup", "docker", "kubernetes")


class MissCounter(Collector):
    def __init__(self) -> None:
        self._counts = dict.fromkeys(SOURCES, 0)
        self._lock = threading.Lock()

    def miss(self, source: str) -> None:
        with self._lock:
            self._counts[source] = self._counts.get(source, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily("telegen_metadata_misses", "Lookups the metadata caches could not answer",
                                  labels=["source"])
        for source, count in sorted(self.snapshot().items()):
            fam.add_metric([source], count)
        yield fam
