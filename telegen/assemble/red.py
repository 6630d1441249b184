"""RED metrics (rate, errors, duration) as cumulative OTel histograms, fed by enriched spans.

Attributes follow the HTTP semantic conventions' low-cardinality set; each span counts
with its sample weight so that kernel-side shedding leaves the histograms unbiased.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

from telegen.signals import (
    SPAN_KIND_SERVER,
    AttrValue,
    HistogramPoint,
    MetricFamily,
    Resource,
    SpanRecord,
)

# Semantic-convention advisory buckets for http.*.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
SIZE_BUCKETS = (0.0, 100.0, 1000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0, 100_000_000.0)

_METRIC_ATTRS = ("http.request.method", "http.response.status_code", "http.route", "url.scheme",
                 "server.address", "server.port", "network.protocol.version", "error.type")

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


class RedMetrics:
    """Cumulative histograms keyed by (instrument, resource, attribute set)."""

    def __init__(self, max_series: int = 20000) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, Resource, tuple[tuple[str, AttrValue], ...]], _Hist] = {}
        self._start_ns = time.time_ns()
        self.max_series = max_series
        self.series_overflow = 0

    def observe(self, spans: list[SpanRecord]) -> None:
        with self._lock:
            for span in spans:
                kind = "server" if span.kind == SPAN_KIND_SERVER else "client"
                attrs = span.attributes
                key_attrs = tuple((k, attrs[k]) for k in _METRIC_ATTRS if k in attrs)
                weight = span.sample_weight
                duration = max(0, span.end_ns - span.start_ns) / 1e9
                for suffix, (_, _, buckets, source) in _INSTRUMENTS.items():
                    if source:
                        raw = attrs.get(source)
                        if not isinstance(raw, int):
                            continue
                        value = float(raw)
                    else:
                        value = duration
                    self._add(f"http.{kind}.{suffix}" if suffix != "duration" else f"http.{kind}.request.duration",
                              span.resource, key_attrs, buckets, value, weight)

    def _add(self, name: str, resource: Resource, attrs: tuple[tuple[str, AttrValue], ...],
             buckets: tuple[float, ...], value: float, weight: float) -> None:
        key = (name, resource, attrs)
        hist = self._series.get(key)
        if hist is None:
            if len(self._series) >= self.max_series:
                self.series_overflow += 1
                return
            hist = self._series[key] = _Hist(len(buckets))
        hist.counts[bisect.bisect_left(buckets, value)] += weight
        hist.sum += value * weight
        hist.count += weight

    def collect_metrics(self) -> list[MetricFamily]:
        families: dict[tuple[str, Resource], MetricFamily] = {}
        with self._lock:
            for (name, resource, attrs), hist in self._series.items():
                fam = families.get((name, resource))
                if fam is None:
                    suffix = name.split(".", 2)[2]
                    key = "duration" if suffix == "request.duration" else suffix
                    desc, unit, buckets, _ = _INSTRUMENTS[key]
                    fam = families[(name, resource)] = MetricFamily(
                        name, desc.format(kind=name.split(".")[1]), unit, "histogram", resource, self._start_ns)
                    fam_buckets = buckets
                else:
                    fam_buckets = _INSTRUMENTS["duration"][2] if name.endswith("duration") else SIZE_BUCKETS
                # count is the sum of the rounded buckets: OTLP and Prometheus require them equal
                counts = [round(c) for c in hist.counts]
                fam.points.append(HistogramPoint(dict(attrs), fam_buckets, counts, sum(counts), hist.sum))
        return list(families.values())

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"series": len(self._series), "series_overflow": self.series_overflow}
