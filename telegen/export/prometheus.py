"""Prometheus view: workload MetricFamilies by the OTel->Prometheus rules, and export self metrics.

Both are Collectors read at scrape time. Naming follows the OpenTelemetry "Prometheus and
OpenMetrics compatibility" spec: invalid characters -> '_', the UCUM unit as a suffix
(s -> seconds, By -> bytes, a/b -> a_per_b, {annotations} dropped, 1 -> ratio on gauges),
counters get `_total`, histograms `_bucket{le}`/`_sum`/`_count`. Point attributes become
labels (dots -> underscores); a fixed set of identifying resource attributes is added as
labels (not job/instance, which the scraping server owns); see RESOURCE_LABELS.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from telegen.export.batcher import DROP_REASONS
from telegen.signals import AttrValue, HistogramPoint, MetricFamily, MetricSource

if TYPE_CHECKING:
    from telegen.export.exporter import ExportStage

log = logging.getLogger(__name__)

RESOURCE_LABELS = (
    "service.name", "service.namespace", "service.instance.id", "k8s.namespace.name", "k8s.pod.name",
    "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "container.name",
    "process.executable.name",
)
_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes",
    "GiBy": "gibibytes", "TiBy": "tibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes", "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts",
    "g": "grams", "Cel": "celsius", "Hz": "hertz", "%": "percent",
}
_PER = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_UNDERSCORES = re.compile(r"__+")
_PROM_TYPES = {"histogram": "histogram", "counter": "counter", "gauge": "gauge"}


def unit_suffix(unit: str, kind: str) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if unit == "1":
        return "ratio" if kind == "gauge" else ""
    if not unit:
        return ""
    num, _, per = unit.partition("/")
    parts = [_UNITS.get(num, _INVALID_LABEL.sub("_", num))] if num and num != "1" else []
    if per:
        parts.append("per_" + _PER.get(per, _UNITS.get(per, _INVALID_LABEL.sub("_", per))))
    return "_".join(p for p in parts if p)


def metric_name(name: str, unit: str, kind: str) -> str:
    """OTel name + unit -> Prometheus base name (without `_total`, which the counter type adds)."""
    base = _UNDERSCORES.sub("_", _INVALID_NAME.sub("_", name)).strip("_") or "metric"
    if base[0].isdigit():
        base = "_" + base
    if kind == "counter" and base.endswith("_total"):
        base = base[: -len("_total")]
    suffix = unit_suffix(unit, kind)
    if suffix and not base.endswith("_" + suffix):
        base += "_" + suffix
    return base


def label_name(key: str) -> str:
    name = _INVALID_LABEL.sub("_", key)
    if name[:1].isdigit():
        name = "key_" + name
    return "key" + name if name.startswith("__") else name


def _label_value(value: AttrValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def labels_for(resource: Iterable[tuple[str, AttrValue]], attrs: dict[str, AttrValue]) -> dict[str, str]:
    """Point attributes + identifying resource attributes; collisions after sanitizing join with ';'."""
    by_name: dict[str, list[tuple[str, str]]] = {}
    for key, value in resource:
        if key in RESOURCE_LABELS:
            by_name.setdefault(label_name(key), []).append((key, _label_value(value)))
    for key, value in attrs.items():
        by_name.setdefault(label_name(key), []).append((key, _label_value(value)))
    return {name: ";".join(v for _, v in sorted(pairs)) for name, pairs in by_name.items()}


def _le(bound: float) -> str:
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


class _Series:
    __slots__ = ("bounds", "buckets", "count", "labels", "sum", "value")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.value = 0.0
        self.bounds: tuple[float, ...] | None = None
        self.buckets: list[int] = []
        self.count = 0
        self.sum = 0.0


def to_prometheus(families: Sequence[MetricFamily]) -> list[Metric]:
    """Merge families (many resources per name) into one Prometheus family per name."""
    out: dict[str, tuple[Metric, str, dict[tuple[tuple[str, str], ...], _Series]]] = {}
    for fam in families:
        name = metric_name(fam.name, fam.unit, fam.kind)
        entry = out.get(name)
        if entry is None:
            suffix = unit_suffix(fam.unit, fam.kind)
            metric = Metric(name, fam.description or fam.name, _PROM_TYPES[fam.kind], suffix)
            entry = out[name] = (metric, fam.kind, {})
        if entry[1] != fam.kind:
            log.debug("metric %s has kinds %s and %s; keeping the first", name, entry[1], fam.kind)
            continue
        series = entry[2]
        for point in fam.points:
            labels = labels_for(fam.resource, point.attributes)
            key = tuple(sorted(labels.items()))
            s = series.get(key)
            if s is None:
                s = series[key] = _Series(labels)
            # Two resources that differ only in attributes we do not label add up, like Prometheus' sum().
            if isinstance(point, HistogramPoint):
                if s.bounds is None:
                    s.bounds, s.buckets = point.bounds, list(point.bucket_counts)
                elif s.bounds == point.bounds:
                    s.buckets = [a + b for a, b in zip(s.buckets, point.bucket_counts, strict=True)]
                else:
                    continue
                s.count += point.count
                s.sum += point.sum
            elif fam.kind == "counter":
                s.value += float(point.value)
            else:
                s.value = float(point.value)
    metrics = []
    for metric, kind, series in out.values():
        for s in series.values():
            if kind == "histogram" and s.bounds is not None:
                cumulative = 0
                for bound, count in zip((*s.bounds, float("inf")), s.buckets, strict=False):
                    cumulative += count
                    metric.add_sample(metric.name + "_bucket", {**s.labels, "le": _le(bound)},
                                      cumulative)
                metric.add_sample(metric.name + "_count", s.labels, s.count)
                metric.add_sample(metric.name + "_sum", s.labels, s.sum)
            elif kind == "counter":
                metric.add_sample(metric.name + "_total", s.labels, s.value)
            elif kind == "gauge":
                metric.add_sample(metric.name, s.labels, s.value)
        metrics.append(metric)
    return metrics


class WorkloadCollector(Collector):
    """The observed workloads' RED/TCP metrics, collected from the MetricSources at scrape time."""

    def __init__(self, sources: Sequence[MetricSource], enabled: Callable[[], bool] = lambda: True) -> None:
        self.sources = sources
        self.enabled = enabled

    def describe(self) -> list[Metric]:
        return []  # don't snapshot the sources at registration time

    def collect(self) -> Iterator[Metric]:
        if not self.enabled():
            return
        families: list[MetricFamily] = []
        for source in self.sources:
            try:
                families.extend(source.collect_metrics())
            except Exception:  # a broken source hides its own metrics, never the whole scrape
                log.exception("metric source %r failed during scrape", source)
        yield from to_prometheus(families)


class ExportSelfCollector(Collector):
    """telegen_export_* / telegen_exported_*: the accounting law's numbers, read at scrape time."""

    def __init__(self, stage: ExportStage) -> None:
        self.stage = stage

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        counts: dict[str, dict[str, Any]] = {str(k): v for k, v in self.stage.queue_counts().items()}
        size = GaugeMetricFamily("telegen_export_queue_size", "Items waiting in the export queue.",
                                 labels=["signal"])
        capacity = GaugeMetricFamily("telegen_export_queue_capacity", "Configured bound of the export queue.",
                                     labels=["signal"])
        in_flight = GaugeMetricFamily("telegen_export_in_flight_items", "Items being sent or retried now.",
                                      labels=["signal"])
        produced = CounterMetricFamily("telegen_export_produced_items", "Items offered to the export queue.",
                                       labels=["signal"])
        exported = CounterMetricFamily("telegen_exported_items", "Items acknowledged by the collector "
                                       "(console: written).", labels=["signal"])
        dropped = CounterMetricFamily("telegen_export_dropped_items", "Items given up on, by reason.",
                                      labels=["signal", "reason"])
        failures = CounterMetricFamily("telegen_export_failures", "Failed export attempts by gRPC code.",
                                       labels=["signal", "code"])
        for signal, c in counts.items():
            size.add_metric([signal], c["size"])
            capacity.add_metric([signal], c["capacity"])
            in_flight.add_metric([signal], c["in_flight"])
            produced.add_metric([signal], c["produced"])
            exported.add_metric([signal], c["exported"])
            for reason in DROP_REASONS:
                dropped.add_metric([signal, reason], c["dropped_by_reason"].get(reason, 0))
        for (signal, code), n in sorted(self.stage.failures().items()):
            failures.add_metric([signal, code], n)
        yield from (size, capacity, in_flight, produced, exported, dropped, failures)
