"""The generated-class trace/log encoder the wire encoder replaced: the reference its bytes must match."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceProto
from opentelemetry.proto.trace.v1 import trace_pb2

from telegen import __version__
from telegen.export.otlp_encode import group_by_resource, key_values
from telegen.signals import LogRecordItem, SpanRecord


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name="telegen", version=__version__)


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
