"""RED metrics (rate, errors, duration) as cumulative OTel histograms, fed by enriched spans.

Attributes follow the HTTP semantic conventions' low-cardinality set; each span counts
with its sample weight so that kernel-side shedding leaves the histograms unbiased.
"""

from __future__ import annotations

import bisect
import operator
import threading
import time
from typing import Any, TypeVar

from telegen.assemble.http_shapes import METRIC_ATTRS, MetricAttrs
from telegen.assemble.span_groups import SpanGroups
from telegen.signals import (
    SPAN_KIND_SERVER,
    HistogramPoint,
    MetricFamily,
    Resource,
    SpanRecord,
)

# Semantic-convention advisory buckets for http.*.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZE_BUCKETS = (0.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0, 100_000_000.0)


_INSTRUMENTS = {
    # name -> (description, unit, buckets, span attribute holding the value or "" for duration)
    "duration": ("Duration of HTTP {kind} requests.", "s", DURATION_BUCKETS, ""),
    "request.body.size": ("Size of HTTP {kind} request bodies.", "By", SIZE_BUCKETS, "http.request.body.size"),
    "response.body.size": ("Size of HTTP {kind} response bodies.", "By", SIZE_BUCKETS, "http.response.body.size"),
}


class _Hist:
    __slots__ = ("count", "counts", "sum")

    def __init__(self, n: int) -> None:
        self.counts = [0.0] * (n + 1)
        self.sum = 0.0
        self.count = 0.0

    def add(self, buckets: tuple[float, ...], value: float, weight: float) -> None:
        self.counts[bisect.bisect_left(buckets, value)] += weight
        self.sum += value * weight
        self.count += weight

    def add_all(self, buckets: tuple[float, ...], values: list[float], weights: list[float]) -> None:
        counts, find = self.counts, bisect.bisect_left
        for value, weight in zip(values, weights, strict=True):
            counts[find(buckets, value)] += weight
        self.sum += sum(map(operator.mul, values, weights))
        self.count += sum(weights)


class _Series:
    """The three instruments of one (kind, resource, attribute set): one lookup per span."""

    __slots__ = ("duration", "request_size", "response_size")

    def __init__(self) -> None:
        self.duration = _Hist(len(DURATION_BUCKETS))
        self.request_size = _Hist(len(SIZE_BUCKETS))
        self.response_size = _Hist(len(SIZE_BUCKETS))


_T = TypeVar("_T", Resource, MetricAttrs)
_SeriesKey = tuple[bool, int, int]  # (server?, interned resource, interned attribute set)


class RedMetrics:
    """Cumulative histograms keyed by (server|client, resource, attribute set)."""

    def __init__(self, max_series: int = 20000) -> None:
        self._lock = threading.Lock()
        self._series: dict[_SeriesKey, _Series] = {}
        # Resources are ~15-pair tuples that Python re-hashes on every lookup: intern each to an
        # int once per batch (bounded with the series, which are capped).
        self._resource_ids: dict[Resource, int] = {}
        self._resources: list[Resource] = []
        self._attr_ids: dict[MetricAttrs, int] = {}  # attribute sets, interned the same way
        self._attr_sets: list[MetricAttrs] = []
        self._start_ns = time.time_ns()
        self.max_series = max_series
        self.series_overflow = 0

    def observe(self, spans: list[SpanRecord]) -> None:
        self.observe_groups(SpanGroups(spans))

    def observe_groups(self, groups: SpanGroups) -> None:
        with self._lock:
            # one series lookup per group of spans, instead of hashing ~15-pair tuples per span
            resource_ids: dict[int, int] = {}
            for key, group in groups.items():
                resource_key, _, kind = key
                first = group[0]
                rid = resource_ids.get(resource_key)
                if rid is None:
                    rid = resource_ids[resource_key] = self._intern(self._resource_ids, self._resources, first.resource)
                metric_attrs = first.metric_attrs
                if metric_attrs is None:  # attributes rewritten after the builder: from the attributes
                    attrs = first.attributes
                    metric_attrs = tuple([(k, attrs[k]) for k in METRIC_ATTRS if k in attrs])
                aid = self._intern(self._attr_ids, self._attr_sets, metric_attrs)
                entry = self._entry((kind == SPAN_KIND_SERVER, rid, aid)) if rid >= 0 and aid >= 0 else None
                if entry is None:  # a new resource, attribute set or series past the cap
                    self.series_overflow += len(group)
                    continue
                self._add(entry, group, groups.durations(key))

    def _entry(self, key: _SeriesKey) -> _Series | None:
        entry = self._series.get(key)
        if entry is None:
            if len(self._series) >= self.max_series:
                return None
            entry = self._series[key] = _Series()
        return entry

    @staticmethod
    def _add(entry: _Series, group: list[SpanRecord], durations: list[float]) -> None:
        weights = [span.sample_weight for span in group]
        entry.duration.add_all(DURATION_BUCKETS, durations, weights)
        for attr, hist in (("http.request.body.size", entry.request_size),
                           ("http.response.body.size", entry.response_size)):
            sizes = [span.attributes.get(attr) for span in group]
            if all(type(size) is int for size in sizes):
                hist.add_all(SIZE_BUCKETS, list(map(float, sizes)), weights)  # type: ignore[arg-type]
                continue
            for size, weight in zip(sizes, weights, strict=True):
                if isinstance(size, int):
                    hist.add(SIZE_BUCKETS, float(size), weight)

    def _intern(self, ids: dict[_T, int], values: list[_T], value: _T) -> int:
        """A small int for a resource or attribute set; -1 once the table is full."""
        got = ids.get(value)
        if got is None:
            if len(values) >= self.max_series:
                return -1
            got = ids[value] = len(values)
            values.append(value)
        return got

    def collect_metrics(self) -> list[MetricFamily]:
        families: dict[tuple[str, Resource], MetricFamily] = {}
        with self._lock:
            for (server, rid, aid), entry in self._series.items():
                resource, attrs = self._resources[rid], self._attr_sets[aid]
                kind = "server" if server else "client"
                for suffix, hist in (("duration", entry.duration), ("request.body.size", entry.request_size),
                                     ("response.body.size", entry.response_size)):
                    if not hist.count:
                        continue
                    desc, unit, buckets, _ = _INSTRUMENTS[suffix]
                    name = f"http.{kind}.request.duration" if suffix == "duration" else f"http.{kind}.{suffix}"
                    fam = families.get((name, resource))
                    if fam is None:
                        fam = families[(name, resource)] = MetricFamily(
                            name, desc.format(kind=kind), unit, "histogram", resource, self._start_ns)
                    # count is the sum of the rounded buckets: OTLP and Prometheus require them equal
                    counts = [round(c) for c in hist.counts]
                    fam.points.append(HistogramPoint(dict(attrs), buckets, counts, sum(counts), hist.sum))
        return list(families.values())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"series": len(self._series), "series_overflow": self.series_overflow}
