"""Wire primitives: varints, tags against the generated descriptors, the attribute memo's type safety."""

from __future__ import annotations

import math

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal.encoder import _VarintBytes  # type: ignore[attr-defined]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from telegen.export import otlp_requests
from telegen.export.otlp_wire import KeyValueMemo, any_value, varint
from telegen.signals import AttrValue
from tests.unit.export.factories import make_span

_WIRE = {FieldDescriptor.TYPE_FIXED64: 1, FieldDescriptor.TYPE_DOUBLE: 1, FieldDescriptor.TYPE_MESSAGE: 2,
         FieldDescriptor.TYPE_STRING: 2, FieldDescriptor.TYPE_BYTES: 2}

# Every tag byte the encoder writes, with the field it stands for.
TAGS = [
    (ExportTraceServiceRequest, "resource_spans", 0x0A), (ExportLogsServiceRequest, "resource_logs", 0x0A),
    (trace_pb2.ResourceSpans, "resource", 0x0A), (trace_pb2.ResourceSpans, "scope_spans", 0x12),
    (logs_pb2.ResourceLogs, "resource", 0x0A), (logs_pb2.ResourceLogs, "scope_logs", 0x12),
    (trace_pb2.ScopeSpans, "scope", 0x0A), (trace_pb2.ScopeSpans, "spans", 0x12),
    (logs_pb2.ScopeLogs, "scope", 0x0A), (logs_pb2.ScopeLogs, "log_records", 0x12),
    (InstrumentationScope, "name", 0x0A), (InstrumentationScope, "version", 0x12),
    (Resource, "attributes", 0x0A), (KeyValue, "key", 0x0A), (KeyValue, "value", 0x12),
    (AnyValue, "string_value", 0x0A), (AnyValue, "bool_value", 0x10), (AnyValue, "int_value", 0x18),
    (AnyValue, "double_value", 0x21),
    (trace_pb2.Span, "trace_id", 0x0A), (trace_pb2.Span, "span_id", 0x12), (trace_pb2.Span, "parent_span_id", 0x22),
    (trace_pb2.Span, "name", 0x2A), (trace_pb2.Span, "kind", 0x30), (trace_pb2.Span, "start_time_unix_nano", 0x39),
    (trace_pb2.Span, "end_time_unix_nano", 0x41), (trace_pb2.Span, "attributes", 0x4A),
    (trace_pb2.Span, "status", 0x7A), (trace_pb2.Status, "message", 0x12), (trace_pb2.Status, "code", 0x18),
    (logs_pb2.LogRecord, "time_unix_nano", 0x09), (logs_pb2.LogRecord, "severity_number", 0x10),
    (logs_pb2.LogRecord, "severity_text", 0x1A), (logs_pb2.LogRecord, "body", 0x2A),
    (logs_pb2.LogRecord, "attributes", 0x32), (logs_pb2.LogRecord, "observed_time_unix_nano", 0x59),
    (logs_pb2.LogRecord, "event_name", 0x62),
]


@pytest.mark.parametrize(("message", "name", "tag"), TAGS, ids=[f"{m.__name__}.{n}" for m, n, _ in TAGS])
def test_tags_match_the_generated_descriptors(message: type, name: str, tag: int) -> None:
    field = message.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    assert (field.number << 3) | _WIRE.get(field.type, 0) == tag


def test_memo_tags_are_the_attribute_fields() -> None:
    assert otlp_requests._span_attrs.tag[0] == (trace_pb2.Span.DESCRIPTOR.fields_by_name["attributes"].number << 3) | 2
    assert otlp_requests._log_attrs.tag[0] == (logs_pb2.LogRecord.DESCRIPTOR.fields_by_name["attributes"].number
                                               << 3) | 2


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**21 - 1, 2**21, 2**35, 2**63 - 1, 2**64 - 1])
def test_varint_matches_protobuf(n: int) -> None:
    assert varint(n) == _VarintBytes(n)


@pytest.mark.parametrize("n", [-1, -128, -(2**31), -(2**63)])
def test_negative_int64_is_ten_bytes_of_twos_complement(n: int) -> None:
    assert b"\x18" + varint(n) == AnyValue(int_value=n).SerializeToString()
    assert len(varint(n)) == 10


@pytest.mark.parametrize("value", [True, False, 0, 1, -1, 2**63 - 1, -(2**63), 1.0, -0.0, 0.0, math.inf,
                                   "", "x", "日本語 ✓", 1e-310])
def test_any_value_matches_protobuf(value: AttrValue) -> None:
    kind = {bool: "bool_value", int: "int_value", float: "double_value", str: "string_value"}[type(value)]
    assert any_value(value) == AnyValue(**{kind: value}).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 127, 128, 16383, 16384, 2**21 - 1, 2**21, -1, 2**63 - 1, True, 0.5,
                                   "x" * 123, "x" * 124, "x" * 125, "x" * 126, "x" * 127, "x" * 128, "é" * 70])
@pytest.mark.parametrize("key", ["", "k", "http.response.body.size", "k" * 130])
def test_memo_encoding_matches_protobuf(key: str, value: AttrValue) -> None:
    kind = {bool: "bool_value", int: "int_value", float: "double_value", str: "string_value"}[type(value)]
    span = trace_pb2.Span(attributes=[KeyValue(key=key, value=AnyValue(**{kind: value}))])  # type: ignore[arg-type]
    assert KeyValueMemo(0x4A).encode(key, value) == span.SerializeToString()


def test_out_of_range_int_and_lone_surrogate_still_encode() -> None:
    # The generated classes raised here and lost the whole batch; a collector would reject invalid UTF-8.
    assert AnyValue.FromString(any_value(2**64)).string_value == str(2**64)
    assert AnyValue.FromString(any_value("a\ud800b")).string_value == "a?b"


def _decoded(memo: KeyValueMemo, attrs: dict[str, AttrValue]) -> list[AnyValue]:
    return [trace_pb2.Span.FromString(f).attributes[0].value for f in memo.fields(attrs)]


def test_memo_keeps_equal_values_of_different_types_apart() -> None:
    memo = KeyValueMemo(0x4A)
    seen = [_decoded(memo, {"a": v})[0] for v in (1, True, 1.0, 0, False, 0.0, -0.0, 1, True)]
    assert [v.WhichOneof("value") for v in seen] == ["int_value", "bool_value", "double_value", "int_value",
                                                      "bool_value", "double_value", "double_value", "int_value",
                                                      "bool_value"]
    assert math.copysign(1.0, seen[6].double_value) == -1.0  # -0.0 did not come back as the cached 0.0
    assert math.isnan(_decoded(memo, {"a": math.nan})[0].double_value)
    assert _decoded(memo, {"a": 5e-05})[0].double_value == 5e-05  # a TCP connect time: stored, reused
    assert ("a", float, 5e-05) in memo.memo
    assert not [k for k in memo.memo if k[1] is float and (k[2] == 0.0 or k[2] != k[2])]


def test_unhashable_value_is_encoded_as_text_like_before() -> None:
    memo = KeyValueMemo(0x4A)
    assert _decoded(memo, {"a": 1, "b": [1, 2]}) == [  # type: ignore[dict-item]
        AnyValue(int_value=1), AnyValue(string_value="[1, 2]")]


def test_memo_is_bounded() -> None:
    memo = KeyValueMemo(0x4A, limit=8)
    for i in range(100):
        assert _decoded(memo, {"port": i, "path": f"/p/{i}"}) == [AnyValue(int_value=i),
                                                                    AnyValue(string_value=f"/p/{i}")]
        assert len(memo.memo) <= 8


def test_span_field_is_one_scope_spans_field() -> None:
    a, b = otlp_requests.span_field(make_span(1)), otlp_requests.span_field(make_span(2))
    assert len(a) == len(b)  # same shape; only ids, times and the path's digit differ
    assert trace_pb2.ScopeSpans.FromString(a).spans[0].name == "GET /api/users/{id}"
