"""ExportStage against the reference OTLP receiver: delivery, every fault case, the law, retry behaviour."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from telegen.config import OtlpConfig, TlsConfig
from telegen.export.exporter import ExportStage
from telegen.export.sender import RetryPolicy
from tests.conftest import require
from tests.otlp_receiver import Fault, OtlpReceiver
from tests.unit.export.factories import (
    BOUNDS,
    FAST_RETRY,
    FakeMetrics,
    assert_law,
    make_config,
    make_log,
    make_spans,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rx() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def _stage(rx: OtlpReceiver, retry: RetryPolicy = FAST_RETRY, **cfg: object) -> ExportStage:
    stage = ExportStage(make_config(rx.endpoint, **cfg), [], retry=retry)  # type: ignore[arg-type]
    stage.start()
    return stage


def _wait_settled(stage: ExportStage, signal: str = "traces", timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = assert_law(stage)[signal]
        if c["size"] == 0 and c["in_flight"] == 0:
            return c
        time.sleep(0.02)
    raise AssertionError(f"not settled: {stage.queue_counts()}")


def test_spans_logs_metrics_arrive_grouped_with_scope_and_headers(rx: OtlpReceiver) -> None:
    metrics = FakeMetrics()
    metrics.record(0.003, n=5)
    metrics.record(0.2, 500)
    config = make_config(rx.endpoint, headers={"X-Api-Key": "s3cret"})
    stage = ExportStage(config, [metrics], retry=FAST_RETRY)
    stage.start()
    try:
        stage.submit_spans(make_spans(25))
        stage.submit_logs([make_log(i) for i in range(3)])
        result = stage.flush(5)
        assert result.ok and result.flushed == {"traces": 25, "metrics": 4, "logs": 3}
        assert len(rx.spans) == 25 and len(rx.logs) == 3 and rx.metric_point_count() == 4
        got = rx.spans[0]
        assert got.resource["service.name"] == "users" and got.resource["process.pid"] == 987
        assert (got.scope_name, got.scope_version) == ("telegen", "0.1.0")
        assert got.span.name == "GET /api/users/{id}" and len(got.span.trace_id) == 16
        assert all(c.metadata.get("x-api-key") == "s3cret" for c in rx.calls)
        hist = next(m.item for m in rx.metrics if m.item.name == "http.server.request.duration")
        assert hist.histogram.aggregation_temporality == 2  # cumulative
        assert list(hist.histogram.data_points[0].explicit_bounds) == list(BOUNDS)
        status = stage.status()
        assert status["connected"] is True and status["last_error"] is None and status["last_export"]
        assert status["queues"]["traces"]["exported"] == 25
        assert stage.readiness() == "ok"
        assert_law(stage)
    finally:
        stage.stop(2)


def test_unavailable_is_retried_then_delivered(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.unavailable(), times=2, signal="traces")
    stage = _stage(rx)
    try:
        stage.submit_spans(make_spans(5))
        c = _wait_settled(stage)
        assert c["exported"] == 5 and c["dropped"] == 0
        assert [x.code for x in rx.calls_for("traces")] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
        assert stage.failures() == {("traces", "UNAVAILABLE"): 2}
        gaps = [b.at - a.at for a, b in zip(rx.calls_for("traces"), rx.calls_for("traces")[1:], strict=False)]
        assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # 0.05 then 0.1: exponential, no jitter in tests
    finally:
        stage.stop(2)


def test_retries_exhausted_after_max_elapsed(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.unavailable(), signal="traces")
    stage = _stage(rx)
    try:
        stage.submit_spans(make_spans(4))
        c = _wait_settled(stage)
        # waits 0.05, 0.1, 0.2 fit in 0.45 s; the next 0.2 would not: exactly 4 attempts.
        assert len(rx.calls_for("traces")) == 4
        assert c["dropped_by_reason"]["retries_exhausted"] == 4 and c["exported"] == 0
        assert stage.status()["last_error"] == "UNAVAILABLE: injected: unavailable"
    finally:
        stage.stop(2)


def test_resource_exhausted_without_retry_info_is_permanent(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.resource_exhausted(), times=1, signal="traces")
    stage = _stage(rx)
    try:
        stage.submit_spans(make_spans(3))
        c = _wait_settled(stage)
        time.sleep(0.2)  # a retry would have happened by now
        assert [x.code for x in rx.calls_for("traces")] == ["RESOURCE_EXHAUSTED"]
        assert c["dropped_by_reason"]["permanent_error"] == 3
        assert stage.readiness().startswith("failed: ")
    finally:
        stage.stop(2)


def test_resource_exhausted_with_retry_info_honours_delay(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.resource_exhausted(retry_after=0.6), times=1, signal="traces")
    stage = _stage(rx, retry=replace(FAST_RETRY, max_elapsed=5))
    try:
        stage.submit_spans(make_spans(3))
        c = _wait_settled(stage)
        calls = rx.calls_for("traces")
        assert [x.code for x in calls] == ["RESOURCE_EXHAUSTED", "OK"]
        assert calls[1].at - calls[0].at >= 0.59  # the server's delay, not our 0.05 s backoff
        assert c["exported"] == 3 and len(rx.spans) == 3
        assert stage.failures() == {("traces", "RESOURCE_EXHAUSTED"): 1}
    finally:
        stage.stop(2)


def test_invalid_argument_is_not_retried(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.invalid_argument(), times=1, signal="traces")
    stage = _stage(rx)
    try:
        stage.submit_spans(make_spans(6))
        c = _wait_settled(stage)
        time.sleep(0.2)
        assert len(rx.calls_for("traces")) == 1
        assert c["dropped_by_reason"]["permanent_error"] == 6
        assert stage.status()["last_error"].startswith("INVALID_ARGUMENT: ")
    finally:
        stage.stop(2)


def test_partial_success_counts_rejected_as_dropped(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.partial_success(rejected=3), times=1, signal="traces")
    stage = _stage(rx, batch_size=10)
    try:
        stage.submit_spans(make_spans(10))
        assert stage.flush(5).flushed["traces"] == 7
        c = _wait_settled(stage)
        assert len(rx.calls_for("traces")) == 1
        assert c["exported"] == 7 and c["dropped_by_reason"]["partial_success"] == 3
    finally:
        stage.stop(2)


def test_slow_answer_past_deadline_is_retried(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.slow(0.8), times=1, signal="traces")
    stage = _stage(rx, retry=replace(FAST_RETRY, max_elapsed=5), timeout=0.3)
    try:
        stage.submit_spans(make_spans(2))
        c = _wait_settled(stage)
        assert c["exported"] == 2
        assert stage.failures() == {("traces", "DEADLINE_EXCEEDED"): 1}
        assert len(rx.calls_for("traces")) == 2
    finally:
        stage.stop(2)


def test_shutdown_cancels_a_call_in_flight(rx: OtlpReceiver) -> None:
    """A collector that does not answer does not hold shutdown past its grace period."""
    rx.set_fault(Fault.slow(20), times=1, signal="traces")
    stage = _stage(rx, timeout=30)
    stage.submit_spans(make_spans(3))
    deadline = time.monotonic() + 5
    while not rx.calls_for("traces") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rx.calls_for("traces"), "the call never reached the collector"
    t0 = time.monotonic()
    stage.stop(0.5)
    assert time.monotonic() - t0 < 3
    c = assert_law(stage)["traces"]
    assert c["exported"] == 0 and c["dropped_by_reason"]["shutdown"] == 3 and c["in_flight"] == 0


def test_refused_then_back_delivers_everything_queued(rx: OtlpReceiver) -> None:
    rx.stop()
    stage = _stage(rx, retry=replace(FAST_RETRY, max_elapsed=30))
    try:
        stage.submit_spans(make_spans(30))
        time.sleep(0.5)
        status = stage.status()
        assert status["connected"] is False
        assert status["last_error"] == "UNAVAILABLE: connection refused"
        assert stage.readiness() == "failed: connection refused"
        flush = stage.flush(0.3)  # unreachable: not ok, counts still waiting, nothing lost
        assert not flush.ok and flush.waiting["traces"] == 30
        assert assert_law(stage)["traces"]["dropped"] == 0
        rx.start()
        assert rx.wait_for_spans(30, timeout=10)
        c = _wait_settled(stage)
        assert c["exported"] == 30 and c["dropped"] == 0
        assert stage.status()["connected"] is True and stage.readiness() == "ok"
    finally:
        stage.stop(2)


def test_restart_mid_stream_loses_nothing(rx: OtlpReceiver) -> None:
    stage = _stage(rx, retry=replace(FAST_RETRY, max_elapsed=30))
    try:
        for i in range(10):
            stage.submit_spans(make_spans(10, start=i * 10))
            if i == 4:
                rx.restart(down_for=0.3)
            time.sleep(0.03)
        assert rx.wait_for_spans(100, timeout=10)
        c = _wait_settled(stage)
        assert c["exported"] == 100 and c["dropped"] == 0
        assert len({s.span.span_id for s in rx.spans}) == 100
    finally:
        stage.stop(2)


def test_full_queue_drops_newest_and_counts(rx: OtlpReceiver) -> None:
    rx.stop()
    stage = _stage(rx, retry=replace(FAST_RETRY, max_elapsed=30), queue_size=10, batch_size=5)
    try:
        stage.submit_spans(make_spans(40))
        c = assert_law(stage)["traces"]
        assert c["dropped_by_reason"]["queue_full"] >= 25 and c["produced"] == 40
    finally:
        stage.stop(0.2)
    c = assert_law(stage)["traces"]
    assert c["size"] == 0 and c["in_flight"] == 0
    assert c["dropped_by_reason"]["shutdown"] + c["dropped_by_reason"]["queue_full"] == 40


def test_shutdown_interrupts_backoff(rx: OtlpReceiver) -> None:
    rx.set_fault(Fault.unavailable(), signal="traces")
    stage = _stage(rx, retry=RetryPolicy(initial_interval=30, max_elapsed=300))
    stage.submit_spans(make_spans(7))
    assert rx.wait_for_calls(1)
    time.sleep(0.1)
    started = time.monotonic()
    stage.stop(0.3)
    assert time.monotonic() - started < 2.0
    c = assert_law(stage)["traces"]
    assert c["dropped_by_reason"]["shutdown"] == 7 and c["in_flight"] == 0
    stage.submit_spans(make_spans(2))  # after stop: refused and counted, never silent
    assert assert_law(stage)["traces"]["dropped_by_reason"]["shutdown"] == 9


def test_stop_drains_within_grace(rx: OtlpReceiver) -> None:
    stage = _stage(rx, interval=30, batch_size=1000)  # nothing would be sent before the interval
    stage.submit_spans(make_spans(50))
    stage.stop(5)
    assert len(rx.spans) == 50 and assert_law(stage)["traces"]["exported"] == 50


def test_large_batches_are_split_under_the_size_limit(rx: OtlpReceiver) -> None:
    config = make_config(rx.endpoint, batch_size=200)
    stage = ExportStage(config, [], retry=FAST_RETRY, max_request_bytes=8000)
    stage.start()
    try:
        stage.submit_spans(make_spans(200))
        assert stage.flush(5).flushed["traces"] == 200
        assert len(rx.calls_for("traces")) >= 4 and len(rx.spans) == 200
    finally:
        stage.stop(2)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_compression_settings_deliver(rx: OtlpReceiver, compression: str) -> None:
    stage = _stage(rx, compression=compression)
    try:
        stage.submit_spans(make_spans(5))
        assert stage.flush(5).ok and len(rx.spans) == 5
        assert stage.status()["compression"] == compression
    finally:
        stage.stop(2)


def test_hot_reload_moves_endpoint_and_headers(rx: OtlpReceiver) -> None:
    other = OtlpReceiver().start()
    stage = _stage(rx)
    try:
        stage.submit_spans(make_spans(3))
        assert stage.flush(5).ok and len(rx.spans) == 3
        new = make_config(other.endpoint, headers={"Authorization": "Bearer t"}, queue_size=50)
        assert stage.apply_config(new) == []
        stage.submit_spans(make_spans(4))
        assert stage.flush(5).ok
        assert len(other.spans) == 4 and len(rx.spans) == 3
        assert other.calls[-1].metadata["authorization"] == "Bearer t"
        assert stage.status()["endpoint"] == other.endpoint
        assert stage.status()["queues"]["traces"]["capacity"] == 50
        assert stage.apply_config(make_config("")) == ["otlp.endpoint"]  # otlp -> console: restart
    finally:
        stage.stop(2)
        other.stop()


def test_otlp_config_tls_flag_from_scheme() -> None:
    from telegen.export.sender import parse_endpoint

    assert parse_endpoint(OtlpConfig(endpoint="https://c:4317")) == ("c:4317", True)
    assert parse_endpoint(OtlpConfig(endpoint="http://c:4317", insecure=False)) == ("c:4317", False)
    assert parse_endpoint(OtlpConfig(endpoint="c:4317", insecure=False)) == ("c:4317", True)


def test_tls_with_ca_and_client_certificate(tmp_path: Path) -> None:
    require(shutil.which("openssl") is not None, "openssl, to make a throwaway CA")
    import grpc

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=test-ca")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        (tmp_path / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", "ext.cnf")
    read = lambda n: (tmp_path / n).read_bytes()  # noqa: E731
    creds = grpc.ssl_server_credentials([(read("server.key"), read("server.pem"))],
                                        root_certificates=read("ca.pem"), require_client_auth=True)
    receiver = OtlpReceiver(server_credentials=creds).start()
    tls = TlsConfig(ca_file=str(tmp_path / "ca.pem"), cert_file=str(tmp_path / "client.pem"),
                    key_file=str(tmp_path / "client.key"))
    stage = _stage(receiver, insecure=False, tls=tls)
    try:
        stage.submit_spans(make_spans(4))
        assert stage.flush(5).ok and len(receiver.spans) == 4
        assert stage.status()["tls"] is True
    finally:
        stage.stop(2)
        receiver.stop()
