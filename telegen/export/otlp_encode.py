"""Batches of spans / log records / metric points -> OTLP Export*ServiceRequest messages.

Built straight from the records with the generated protobuf classes (no SDK object per
item), grouped by resource with one `telegen` instrumentation scope per resource.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto
from opentelemetry.proto.trace.v1 import trace_pb2

from telegen import __version__
from telegen.export.items import MetricPointItem
from telegen.signals import AttrValue, HistogramPoint, LogRecordItem, Resource, SpanRecord

SCOPE_NAME = "telegen"
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE

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


def encode_spans(spans: Iterable[SpanRecord]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for resource, group in group_by_resource(spans).items():
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(ResourceProto(attributes=key_values(resource)))
        ss = rs.scope_spans.add()
        ss.scope.CopyFrom(_scope())
        ss.spans.extend(
            trace_pb2.Span(
                trace_id=s.trace_id, span_id=s.span_id, parent_span_id=s.parent_span_id,
                name=s.name, kind=s.kind,  # type: ignore[arg-type]
                start_time_unix_nano=s.start_ns, end_time_unix_nano=s.end_ns,
                attributes=key_values(s.attributes.items()),
                status=trace_pb2.Status(code=s.status_code,  # type: ignore[arg-type]
                                        message=s.status_message),
            )
            for s in group
        )
    return req


def encode_logs(logs: Iterable[LogRecordItem]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    for resource, group in group_by_resource(logs).items():
        rl = req.resource_logs.add()
        rl.resource.CopyFrom(ResourceProto(attributes=key_values(resource)))
        sl = rl.scope_logs.add()
        sl.scope.CopyFrom(_scope())
        sl.log_records.extend(
            logs_pb2.LogRecord(
                time_unix_nano=r.time_ns, observed_time_unix_nano=r.time_ns,
                severity_number=r.severity_number,  # type: ignore[arg-type]
                severity_text=r.severity_text, body=AnyValue(string_value=r.body),
                attributes=key_values(r.attributes.items()), event_name=r.event_name,
            )
            for r in group
        )
    return req


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
