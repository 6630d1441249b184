"""Wire-encoded trace/log requests equal the generated-class reference, and split under the size limit."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telegen.export.otlp_requests import logs_requests, trace_requests
from telegen.signals import AttrValue, LogRecordItem, Resource, SpanRecord
from tests.unit.export.factories import RESOURCE, make_log, make_span
from tests.unit.export.reference_encode import encode_logs, encode_spans

UNLIMITED = 1 << 40
INT32 = st.integers(-(2**31), 2**31 - 1)
UINT64 = st.integers(0, 2**64 - 1)
values: st.SearchStrategy[AttrValue] = st.one_of(
    st.text(max_size=30), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "GET", "/api/users/{id}", 0, 1, 200]))
keys = st.one_of(st.sampled_from(["", "http.route", "server.port", "flag"]), st.text(max_size=12))
attributes = st.dictionaries(keys, values, max_size=8)
resources = st.lists(st.tuples(keys, values), max_size=6).map(tuple)
ids = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8), st.binary(max_size=20))
kinds = st.one_of(st.integers(0, 5), INT32)
times = st.one_of(st.integers(1_600_000_000 * 10**9, 1_900_000_000 * 10**9), st.just(0), UINT64)


def _pick(pool: list[Resource], index: int, copy: bool) -> Resource:
    res = pool[index % len(pool)]
    return tuple(list(res)) if copy else res  # an equal resource in a distinct object


@st.composite
def span_batches(draw: st.DrawFn) -> list[SpanRecord]:
    pool = draw(st.lists(resources, min_size=1, max_size=6))
    return [SpanRecord(
        trace_id=draw(ids), span_id=draw(ids), parent_span_id=draw(st.one_of(st.just(b""), ids)),
        name=draw(st.text(max_size=20)), kind=draw(kinds), start_ns=draw(times), end_ns=draw(times),
        attributes=draw(attributes), resource=_pick(pool, draw(st.integers(0, 10)), draw(st.booleans())),
        status_code=draw(st.one_of(st.integers(0, 2), INT32)), status_message=draw(st.text(max_size=10)),
    ) for _ in range(draw(st.integers(0, 12)))]


@st.composite
def log_batches(draw: st.DrawFn) -> list[LogRecordItem]:
    pool = draw(st.lists(resources, min_size=1, max_size=4))
    return [LogRecordItem(
        time_ns=draw(times), severity_number=draw(st.one_of(st.integers(0, 24), INT32)),
        severity_text=draw(st.text(max_size=8)), body=draw(st.text(max_size=40)), attributes=draw(attributes),
        resource=_pick(pool, draw(st.integers(0, 10)), draw(st.booleans())), event_name=draw(st.text(max_size=10)),
    ) for _ in range(draw(st.integers(0, 8)))]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(span_batches())
def test_trace_request_equals_the_generated_encoder(spans: list[SpanRecord]) -> None:
    [(payload, count)] = trace_requests(spans, UNLIMITED)
    reference = encode_spans(spans)
    assert count == len(spans)
    assert ExportTraceServiceRequest.FromString(payload) == reference
    assert payload == reference.SerializeToString()  # same field order and omissions, byte for byte


@st.composite
def shaped_span_batches(draw: st.DrawFn) -> list[SpanRecord]:
    """Spans as the HTTP builder makes them: shared base_attrs dicts that each span's attributes
    begin with, then per-span keys (peer port, sizes) that the base does not have; or the shared
    dict as the span's attributes itself."""
    bases = draw(st.lists(attributes, min_size=1, max_size=3))
    spans = []
    for _ in range(draw(st.integers(0, 10))):
        base = bases[draw(st.integers(0, len(bases) - 1))]
        extra = {k: v for k, v in draw(attributes).items() if k not in base}
        spans.append(SpanRecord(
            trace_id=draw(ids), span_id=draw(ids), parent_span_id=draw(st.one_of(st.just(b""), ids)),
            name=draw(st.text(max_size=20)), kind=draw(kinds), start_ns=draw(times), end_ns=draw(times),
            attributes=base if draw(st.booleans()) else {**base, **extra}, resource=RESOURCE, base_attrs=base))
    return spans


@settings(derandomize=True, max_examples=200, deadline=None)
@given(shaped_span_batches())
def test_spans_with_shared_base_attributes_encode_the_same(spans: list[SpanRecord]) -> None:
    [(payload, _)] = trace_requests(spans, UNLIMITED)
    assert payload == encode_spans(spans).SerializeToString()


@settings(derandomize=True, max_examples=200, deadline=None)
@given(log_batches())
def test_logs_request_equals_the_generated_encoder(logs: list[LogRecordItem]) -> None:
    [(payload, count)] = logs_requests(logs, UNLIMITED)
    reference = encode_logs(logs)
    assert count == len(logs)
    assert ExportLogsServiceRequest.FromString(payload) == reference
    assert payload == reference.SerializeToString()


def _spans_by_resource(payloads: Sequence[bytes]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for payload in payloads:
        for rs in ExportTraceServiceRequest.FromString(payload).resource_spans:
            key = rs.resource.SerializeToString()
            out.setdefault(key, []).extend(s.SerializeToString() for ss in rs.scope_spans for s in ss.spans)
    return out


@settings(derandomize=True, max_examples=150, deadline=None)
@given(span_batches(), st.integers(1, 4000))
def test_split_requests_stay_under_the_limit_and_keep_every_span(spans: list[SpanRecord], limit: int) -> None:
    requests = trace_requests(spans, limit)
    assert sum(n for _, n in requests) == len(spans)
    for payload, n in requests:
        assert n >= 1 or not spans
        assert len(payload) <= limit or n == 1  # a span bigger than the limit goes alone
        assert sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(payload).resource_spans
                   for ss in rs.scope_spans) == n
    # Same spans under the same resources, in the same order, as one unlimited request.
    assert _spans_by_resource([p for p, _ in requests]) == \
        _spans_by_resource([trace_requests(spans, UNLIMITED)[0][0]])


def test_split_fills_requests_rather_than_halving() -> None:
    other = (("service.name", "orders"),)
    spans = [make_span(i, resource=RESOURCE if i % 3 else other) for i in range(300)]
    whole = len(trace_requests(spans, UNLIMITED)[0][0])
    requests = trace_requests(spans, 8000)
    assert all(len(p) <= 8000 for p, _ in requests)
    assert len(requests) <= whole // 8000 + 2  # every request but the last is nearly full
    assert sum(n for _, n in requests) == 300


def test_empty_batch_is_one_empty_request() -> None:
    assert trace_requests([], 100) == [(b"", 0)] and logs_requests([], 100) == [(b"", 0)]


def test_oversized_log_record_goes_alone() -> None:
    big = make_log(0)
    big.body = "x" * 5000
    requests = logs_requests([make_log(1), big, make_log(2)], 1000)
    assert [n for _, n in requests] == [1, 1, 1]
    assert ExportLogsServiceRequest.FromString(requests[1][0]).resource_logs[0].scope_logs[0] \
        .log_records[0].body.string_value == "x" * 5000
