"""Encoding records into OTLP requests: grouping, scope, attribute types, metric kinds."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telegen.export import otlp_encode
from telegen.export.items import flatten_families
from telegen.export.otlp_encode import encode_metrics, metric_requests
from telegen.signals import LogRecordItem, SpanRecord, make_resource
from tests.unit.export.factories import BOUNDS, FakeMetrics, make_log, make_span


def encode_spans(spans: Sequence[SpanRecord]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(otlp_encode.encode_spans(spans))


def encode_logs(logs: Sequence[LogRecordItem]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(otlp_encode.encode_logs(logs))


def test_spans_grouped_by_resource_with_typed_attributes() -> None:
    other = make_resource({"service.name": "orders"})
    spans = [make_span(0), make_span(1, resource=other), make_span(2, flag=True, ratio=0.5)]
    req = encode_spans(spans)
    assert len(req.resource_spans) == 2
    first = req.resource_spans[0]
    assert {kv.key for kv in first.resource.attributes} >= {"service.name", "process.pid"}
    assert first.scope_spans[0].scope.name == "telegen" and first.scope_spans[0].scope.version
    assert len(first.scope_spans[0].spans) == 2
    attrs = {kv.key: kv.value for kv in first.scope_spans[0].spans[1].attributes}
    assert attrs["flag"].WhichOneof("value") == "bool_value"
    assert attrs["ratio"].double_value == 0.5
    assert attrs["http.response.status_code"].int_value == 200
    span = first.scope_spans[0].spans[0]
    assert span.kind == 2 and span.end_time_unix_nano - span.start_time_unix_nano == 3_200_000


def test_logs_carry_body_severity_and_event_name() -> None:
    rec = encode_logs([make_log(1)]).resource_logs[0].scope_logs[0].log_records[0]
    assert rec.body.string_value == "connection reset #1" and rec.severity_number == 17
    assert rec.event_name == "tcp.reset"


def test_metrics_cumulative_histogram_counter_gauge() -> None:
    source = FakeMetrics()
    source.record(0.003, n=3)
    items = flatten_families(source.collect_metrics(), 1_800_000_000_000_000_000)
    assert items[-1].last and not items[0].last
    metrics = {m.name: m for m in encode_metrics(items).resource_metrics[0].scope_metrics[0].metrics}
    hist = metrics["http.server.request.duration"]
    assert hist.unit == "s" and hist.histogram.aggregation_temporality == 2
    dp = hist.histogram.data_points[0]
    assert list(dp.explicit_bounds) == list(BOUNDS) and dp.count == 3 and sum(dp.bucket_counts) == 3
    assert dp.start_time_unix_nano < dp.time_unix_nano
    counter = metrics["tcp.connections.opened"]
    assert counter.sum.is_monotonic and counter.sum.aggregation_temporality == 2
    assert counter.sum.data_points[0].as_int == 8
    assert metrics["tcp.rtt"].gauge.data_points[0].as_double == 0.0012


def test_metric_requests_halve_until_under_the_limit() -> None:
    source = FakeMetrics()
    source.record(0.003, n=3)
    source.record(0.2, 500)
    items = flatten_families(source.collect_metrics(), 1_800_000_000_000_000_000)
    [(whole, count)] = metric_requests(items, 1 << 20)
    assert count == len(items) == 4
    assert ExportMetricsServiceRequest.FromString(whole) == encode_metrics(items)
    parts = metric_requests(items, len(whole) // 3)
    assert len(parts) > 1 and sum(n for _, n in parts) == len(items)
    assert all(len(p) <= len(whole) // 3 or n == 1 for p, n in parts)
