"""OTel -> Prometheus naming and labels, and the export self metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from telegen.export.exporter import ExportStage
from telegen.export.prometheus import label_name, labels_for, metric_name, to_prometheus
from tests.unit.export.factories import RESOURCE, FakeMetrics, make_config, make_spans


def test_names_follow_the_compatibility_rules() -> None:
    red = metric_name("http.server.request.duration", "s", "histogram")
    assert red == "http_server_request_duration_seconds"
    assert metric_name("tcp.connections.opened", "{connection}", "counter") == "tcp_connections_opened"
    assert metric_name("network.io", "By", "counter") == "network_io_bytes"
    assert metric_name("cpu.utilization", "1", "gauge") == "cpu_utilization_ratio"
    assert metric_name("tcp.throughput", "By/s", "gauge") == "tcp_throughput_bytes_per_second"
    assert metric_name("requests_total", "", "counter") == "requests"
    assert label_name("http.response.status_code") == "http_response_status_code"
    assert label_name("2xx") == "key_2xx"


def test_labels_join_collisions_and_keep_identifying_resource() -> None:
    labels = labels_for(RESOURCE, {"service_name": "x", "http.route": "/a"})
    assert labels["service_name"] == "users;x"
    assert labels["k8s_pod_name"] == "users-7f9" and "process_pid" not in labels


def test_histogram_exposition_is_cumulative_with_inf() -> None:
    source = FakeMetrics()
    source.record(0.003, n=2)
    source.record(20.0)
    hist = next(m for m in to_prometheus(source.collect_metrics()) if m.type == "histogram")
    buckets = [s for s in hist.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 3
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)


def test_self_metrics_families() -> None:
    stage = ExportStage(make_config("127.0.0.1:1", queue_size=7), [FakeMetrics()])
    stage.submit_spans(make_spans(9))  # not started: 7 queued, 2 refused (queue_full)
    registry = CollectorRegistry()
    for collector in stage.collectors():
        registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'telegen_export_queue_size{signal="traces"} 7.0' in text
    assert 'telegen_export_queue_capacity{signal="traces"} 7.0' in text
    assert 'telegen_export_dropped_items_total{reason="queue_full",signal="traces"} 2.0' in text
    assert 'telegen_exported_items_total{signal="traces"} 0.0' in text
    assert "# TYPE telegen_export_failures_total counter" in text
    stage.stop(0.1)
