"""OtlpSender sends pre-encoded bytes: what the reference receiver decodes equals the generated encoder's message."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from telegen.config import OtlpConfig
from telegen.export.items import flatten_families
from telegen.export.sender import OtlpSender
from telegen.signals import make_resource
from tests.otlp_receiver import Fault, OtlpReceiver
from tests.unit.export.factories import FAST_RETRY, RESOURCE, FakeMetrics, make_log, make_span, make_spans
from tests.unit.export.reference_encode import encode_logs, encode_spans

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def _sender(rx: OtlpReceiver, compression: str = "gzip", max_request_bytes: int = 4 << 20) -> OtlpSender:
    otlp = OtlpConfig(endpoint=rx.endpoint, compression=compression,
                      headers={"X-Tenant": "a"}, timeout=5)
    return OtlpSender(otlp, FAST_RETRY, threading.Event(), max_request_bytes)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_spans_and_logs_arrive_as_the_generated_classes_built_them(rx: OtlpReceiver, compression: str) -> None:
    other = make_resource({"service.name": "orders", "process.pid": 5})
    spans = [make_span(i, resource=other if i % 2 else RESOURCE, ok=True) for i in range(6)]
    logs = [make_log(i) for i in range(3)]
    sender = _sender(rx, compression)
    try:
        assert sender.send("traces", spans).exported == 6
        assert sender.send("logs", logs).exported == 3
    finally:
        sender.close()
    want_spans = [s for rs in encode_spans(spans).resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [r.item for r in rx.spans] == want_spans
    assert rx.spans[-1].resource == {"service.name": "orders", "process.pid": 5}
    want_logs = [r for rl in encode_logs(logs).resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert [r.item for r in rx.logs] == want_logs
    assert all(c.metadata.get("x-tenant") == "a" for c in rx.calls)


def test_metrics_still_go_through_the_generated_classes(rx: OtlpReceiver) -> None:
    source = FakeMetrics()
    source.record(0.01, n=2)
    items = flatten_families(source.collect_metrics(), 1_800_000_000_000_000_000)
    sender = _sender(rx)
    try:
        assert sender.send("metrics", items).exported == len(items)
    finally:
        sender.close()
    assert rx.metric_point_count() == len(items)


def test_split_on_span_boundaries_and_partial_success_per_request(rx: OtlpReceiver) -> None:
    spans = make_spans(60)
    sender = _sender(rx, max_request_bytes=3000)
    requests = sender.split("traces", spans)
    assert len(requests) > 3 and all(len(p) <= 3000 for p, _ in requests)
    rx.set_fault(Fault.partial_success(rejected=2), times=1, signal="traces")
    try:
        result = sender.send("traces", spans)
    finally:
        sender.close()
    assert [c.items for c in rx.calls_for("traces")] == [n for _, n in requests]
    assert result.exported == 58 and result.dropped == {"partial_success": 2}
    assert sorted(r.item.span_id for r in rx.spans) == sorted(s.span_id for s in spans)


def test_retry_resends_the_same_bytes(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.unavailable(), times=2, signal="logs")
    sender = _sender(rx)
    try:
        result = sender.send("logs", [make_log(7)])
    finally:
        sender.close()
    assert result.exported == 1 and result.attempts == 3
    assert [c.code for c in rx.calls_for("logs")] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
    assert rx.logs[0].item.body.string_value == "connection reset #7"
