"""Test factories for export: records, a fake MetricSource, configs with short intervals, the law."""

from __future__ import annotations

import os
from typing import Any

from telegen.config import Config, ConsoleConfig, ExportConfig, OtlpConfig, SignalQueueConfig
from telegen.export.exporter import ExportStage
from telegen.export.sender import RetryPolicy
from telegen.signals import (
    SPAN_KIND_SERVER,
    HistogramPoint,
    LogRecordItem,
    MetricFamily,
    NumberPoint,
    SpanRecord,
    make_resource,
)

RESOURCE = make_resource({"service.name": "users", "k8s.pod.name": "users-7f9", "process.pid": 987,
                          "process.executable.name": "python3"})
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
FAST_RETRY = RetryPolicy(initial_interval=0.05, multiplier=2.0, max_interval=0.2, max_elapsed=0.45,
                         jitter=0.0, reconnect_initial_ms=100, reconnect_max_ms=300)


def make_span(i: int = 0, resource: Any = RESOURCE, **attrs: Any) -> SpanRecord:
    start = 1_700_000_000_000_000_000 + i * 1000
    attributes = {"http.request.method": "GET", "http.route": "/api/users/{id}",
                  "url.path": f"/api/users/{i}",
                  "http.response.status_code": 200, "server.address": "127.0.0.1", "server.port": 8080,
                  "client.address": "127.0.0.1", **attrs}
    return SpanRecord(trace_id=os.urandom(16), span_id=os.urandom(8), parent_span_id=b"",
                      name="GET /api/users/{id}", kind=SPAN_KIND_SERVER, start_ns=start,
                      end_ns=start + 3_200_000, attributes=attributes, resource=resource, pid=987)


def make_spans(n: int, start: int = 0) -> list[SpanRecord]:
    return [make_span(start + i) for i in range(n)]


def make_log(i: int = 0) -> LogRecordItem:
    return LogRecordItem(time_ns=1_700_000_000_000_000_000 + i, severity_number=17, severity_text="ERROR",
                         body=f"connection reset #{i}", attributes={"network.peer.port": 5432},
                         resource=RESOURCE, event_name="tcp.reset")


class FakeMetrics:
    """A MetricSource with cumulative RED state it can advance."""

    def __init__(self) -> None:
        self.ok = [0] * (len(BOUNDS) + 1)
        self.err = [0] * (len(BOUNDS) + 1)
        self.calls = 0

    def record(self, seconds: float, status: int = 200, n: int = 1) -> None:
        idx = next((i for i, b in enumerate(BOUNDS) if seconds <= b), len(BOUNDS))
        (self.err if status >= 500 else self.ok)[idx] += n

    def collect_metrics(self) -> list[MetricFamily]:
        self.calls += 1
        points: list[NumberPoint | HistogramPoint] = []
        for status, buckets in ((200, self.ok), (500, self.err)):
            count = sum(buckets)
            if count:
                mids = [*BOUNDS, BOUNDS[-1]]
                points.append(HistogramPoint(
                    attributes={"http.request.method": "GET", "http.route": "/api/users/{id}",
                                "http.response.status_code": status},
                    bounds=BOUNDS, bucket_counts=list(buckets), count=count,
                    sum=sum(c * m for c, m in zip(buckets, mids, strict=True))))
        fams = [
            MetricFamily("http.server.request.duration", "Duration of HTTP server requests.", "s",
                         "histogram",
                         RESOURCE, 1_700_000_000_000_000_000, points),
            MetricFamily("tcp.connections.opened", "TCP connections opened.", "{connection}", "counter",
                         RESOURCE, 1_700_000_000_000_000_000,
                         [NumberPoint({"network.peer.port": 5432}, 7 + self.calls)]),
            MetricFamily("tcp.rtt", "Smoothed TCP round-trip time.", "s", "gauge", RESOURCE,
                         1_700_000_000_000_000_000, [NumberPoint({"network.peer.port": 5432}, 0.0012)]),
        ]
        return [f for f in fams if f.points]


def make_config(endpoint: str = "", *, queue_size: int = 1000, batch_size: int = 10, interval: float = 0.05,
                timeout: float = 2.0, metrics_interval: float = 3600, console: bool | None = None,
                **otlp: Any) -> Config:
    q = SignalQueueConfig(queue_size=queue_size, batch_size=batch_size, interval=interval)
    mq = SignalQueueConfig(queue_size=queue_size, batch_size=batch_size * 10, interval=metrics_interval)
    return Config(
        otlp=OtlpConfig(endpoint=endpoint, timeout=timeout, **otlp),
        export=ExportConfig(traces=q, logs=q, metrics=mq,
                            console=ConsoleConfig(enabled=console, summary_interval=metrics_interval)),
    )


def assert_law(stage: ExportStage) -> dict[str, dict[str, Any]]:
    """produced = queued + in_flight + exported + dropped, and dropped = sum of its reasons."""
    counts = stage.queue_counts()
    for signal, c in counts.items():
        assert c["produced"] == c["size"] + c["in_flight"] + c["exported"] + c["dropped"], (signal, c)
        assert c["dropped"] == sum(c["dropped_by_reason"].values()), (signal, c)
        status = stage.status()["queues"][signal]
        assert status["produced"] == status["size"] + status["in_flight"] + status["exported"] \
            + status["dropped"], (signal, status)
    return {str(k): v for k, v in counts.items()}
