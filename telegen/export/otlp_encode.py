"""Metric points -> OTLP ExportMetricsServiceRequest messages, with the generated protobuf classes.

Grouped by resource with one `telegen` instrumentation scope per resource. Metrics are few
(one collection per interval), so the generated classes are cheap enough here; spans and log
records, which come by the thousand per second, are written as wire bytes by otlp_requests
(encode_spans/encode_logs below are its unsplit form, for benchmarks and debugging).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto

from telegen import __version__
from telegen.export import otlp_requests
from telegen.export.items import MetricPointItem
from telegen.signals import AttrValue, HistogramPoint, LogRecordItem, Resource, SpanRecord

SCOPE_NAME = "telegen"
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_UNLIMITED = 1 << 62

T = TypeVar("T", SpanRecord, LogRecordItem, MetricPointItem)


def _value(value: AttrValue) -> AnyValue:
    # bool before int: bool is an int subclass.
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def key_values(attrs: Iterable[tuple[str, AttrValue]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs]


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name=SCOPE_NAME, version=__version__)


def group_by_resource(items: Iterable[T]) -> dict[Resource, list[T]]:
    """Items per resource in first-seen order (resources are hashable tuples)."""
    groups: dict[Resource, list[T]] = {}
    for item in items:
        res = item.family.resource if isinstance(item, MetricPointItem) else item.resource
        group = groups.get(res)
        if group is None:
            groups[res] = group = []
        group.append(item)
    return groups


def encode_spans(spans: Sequence[SpanRecord]) -> bytes:
    """One serialized ExportTraceServiceRequest, never split (benchmarks, debugging)."""
    [(payload, _)] = otlp_requests.trace_requests(spans, _UNLIMITED)
    return payload


def encode_logs(logs: Sequence[LogRecordItem]) -> bytes:
    """One serialized ExportLogsServiceRequest, never split."""
    [(payload, _)] = otlp_requests.logs_requests(logs, _UNLIMITED)
    return payload


def _metric_shell(scope_metrics: metrics_pb2.ScopeMetrics, item: MetricPointItem) -> metrics_pb2.Metric:
    fam = item.family
    metric = scope_metrics.metrics.add(name=fam.name, description=fam.description, unit=fam.unit)
    if fam.kind == "histogram":
        metric.histogram.aggregation_temporality = _CUMULATIVE
    elif fam.kind == "counter":
        metric.sum.aggregation_temporality = _CUMULATIVE
        metric.sum.is_monotonic = True
    else:
        metric.gauge.SetInParent()
    return metric


def _add_point(metric: metrics_pb2.Metric, item: MetricPointItem) -> None:
    point, fam = item.point, item.family
    attrs = key_values(point.attributes.items())
    if isinstance(point, HistogramPoint):
        metric.histogram.data_points.add(
            attributes=attrs, start_time_unix_nano=fam.start_ns, time_unix_nano=item.time_ns,
            count=point.count, sum=point.sum, bucket_counts=point.bucket_counts,
            explicit_bounds=point.bounds,
        )
        return
    target = metric.sum.data_points if fam.kind == "counter" else metric.gauge.data_points
    dp = target.add(attributes=attrs, time_unix_nano=item.time_ns)
    if fam.kind == "counter":
        dp.start_time_unix_nano = fam.start_ns
    if isinstance(point.value, int) and not isinstance(point.value, bool):
        dp.as_int = point.value
    else:
        dp.as_double = float(point.value)


def encode_metrics(items: Iterable[MetricPointItem]) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    for resource, group in group_by_resource(items).items():
        rm = req.resource_metrics.add()
        rm.resource.CopyFrom(ResourceProto(attributes=key_values(resource)))
        sm = rm.scope_metrics.add()
        sm.scope.CopyFrom(_scope())
        # One Metric per family object: points of the same collection share it.
        by_family: dict[int, metrics_pb2.Metric] = {}
        for item in group:
            metric = by_family.get(id(item.family))
            if metric is None:
                metric = by_family[id(item.family)] = _metric_shell(sm, item)
            _add_point(metric, item)
    return req


def metric_requests(items: Sequence[MetricPointItem], max_bytes: int) -> list[tuple[bytes, int]]:
    """(serialized request, point count) pairs, halving the points until each is under max_bytes."""
    request = encode_metrics(items)
    if request.ByteSize() <= max_bytes or len(items) <= 1:
        return [(request.SerializeToString(), len(items))]
    mid = len(items) // 2
    return metric_requests(items[:mid], max_bytes) + metric_requests(items[mid:], max_bytes)
