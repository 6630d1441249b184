"""Console exporter: span/log lines, RED summary math, and /status/export in console mode."""

from __future__ import annotations

import io
import time

import pytest

from telegen.export.console import ConsoleClient, format_span, quantile
from telegen.export.exporter import ExportStage
from telegen.export.items import flatten_families
from tests.unit.export.factories import FakeMetrics, assert_law, make_config, make_log, make_span


def test_span_line_reads_like_the_example() -> None:
    span = make_span(1, **{"telegen.peer.process.name": "curl", "telegen.peer.process.pid": 1234})
    expected = "SERVER GET /api/users/{id} 200 3.2ms  curl(1234) -> python3(987) 127.0.0.1:8080"
    assert format_span(span) == expected


def test_quantile_interpolates_like_prometheus() -> None:
    bounds = (0.1, 0.2, 0.4)
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == pytest.approx(0.15)
    assert quantile(0.99, bounds, [0, 0, 0, 5]) == 0.4  # +Inf bucket: highest finite bound
    assert quantile(0.5, bounds, [0, 0, 0, 0]) != quantile(0.5, bounds, [0, 0, 0, 0])  # NaN


def test_red_summary_uses_the_window_delta() -> None:
    out = io.StringIO()
    client = ConsoleClient(out)
    source = FakeMetrics()
    source.record(0.003, n=90)
    client.send("metrics", flatten_families(source.collect_metrics(), 1_700_000_010_000_000_000))
    source.record(0.003, n=9)
    source.record(0.3, 500, n=1)
    client.send("metrics", flatten_families(source.collect_metrics(), 1_700_000_020_000_000_000))
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("RED")]
    assert lines[0].startswith("RED users rate=9.00/s errors=0.0% p50=")
    assert lines[1].startswith("RED users rate=1.00/s errors=10.0% p50=")
    assert "window=10.0s" in lines[1]


def test_console_mode_status_and_accounting() -> None:
    out = io.StringIO()
    stage = ExportStage(make_config(), [FakeMetrics()], console_stream=out)
    stage.start()
    try:
        stage.submit_spans([make_span(i) for i in range(4)])
        stage.submit_logs([make_log(1)])
        assert stage.flush(2).ok
        status = stage.status()
        assert status["endpoint"] is None and status["protocol"] == "console"
        assert status["connected"] is False and status["last_export"] is not None
        assert status["queues"]["traces"]["exported"] == 4 and status["queues"]["logs"]["exported"] == 1
        assert stage.readiness() == "disabled"
        assert out.getvalue().count("SERVER GET") == 4
        assert "LOG ERROR python3(987) tcp.reset" in out.getvalue()
        assert_law(stage)
    finally:
        stage.stop(1)


def test_console_summary_every_interval() -> None:
    out = io.StringIO()
    source = FakeMetrics()
    source.record(0.01, n=3)
    stage = ExportStage(make_config(metrics_interval=0.1), [source], console_stream=out)
    stage.start()
    time.sleep(0.6)
    stage.stop(1)
    assert out.getvalue().count("RED users") >= 3
