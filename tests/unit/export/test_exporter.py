"""ExportStage surface: the /status/export shape, readiness, reload outcomes, health."""

from __future__ import annotations

from telegen.export.exporter import ExportStage
from tests.unit.export.factories import FakeMetrics, make_config


def test_status_has_the_contract_shape() -> None:
    stage = ExportStage(make_config("127.0.0.1:1"), [])
    status = stage.status()
    assert set(status) == {"endpoint", "protocol", "tls", "compression", "connected", "last_export",
                           "last_error", "queues"}
    assert status["protocol"] == "grpc" and status["endpoint"] == "127.0.0.1:1"
    assert set(status["queues"]) == {"traces", "metrics", "logs"}
    keys = {"size", "capacity", "exported", "dropped", "in_flight", "produced"}
    assert set(status["queues"]["traces"]) == keys
    stage.stop(0.1)


def test_readiness_and_health() -> None:
    console = ExportStage(make_config(), [])
    assert console.readiness() == "disabled"
    console.start()
    assert console.healthy() == (True, "")
    console.stop(0.5)
    otlp = ExportStage(make_config("127.0.0.1:1"), [])
    assert otlp.readiness().startswith("failed: ")  # nothing listens on port 1
    otlp.stop(0.1)


def test_reload_applies_queue_sizes_and_reports_mode_switch() -> None:
    stage = ExportStage(make_config(), [FakeMetrics()])
    assert stage.apply_config(make_config(queue_size=20)) == []
    assert stage.status()["queues"]["logs"]["capacity"] == 20
    assert stage.apply_config(make_config("127.0.0.1:4317")) == ["otlp.endpoint"]
    assert stage.status()["protocol"] == "console"
    stage.stop(0.1)


def test_no_sink_refuses_and_counts() -> None:
    stage = ExportStage(make_config(console=False), [])
    stage.start()
    stage.submit_spans([])
    from tests.unit.export.factories import make_spans

    stage.submit_spans(make_spans(3))
    counts = stage.queue_counts()["traces"]
    assert counts["produced"] == 3 and counts["dropped_by_reason"]["disabled"] == 3
    stage.stop(0.1)
