"""The Prometheus view against real tools: Debian's prometheus scrapes it, promtool checks the exposition."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from telegen.export.exporter import ExportStage
from tests.conftest import require
from tests.unit.export.factories import FakeMetrics, make_config

pytestmark = pytest.mark.timeout(90)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def exposed() -> Iterator[tuple[ExportStage, CollectorRegistry, int]]:
    metrics = FakeMetrics()
    for ms in (0.002, 0.003, 0.04, 0.3):
        metrics.record(ms, n=10)
    metrics.record(1.2, 500, n=2)
    stage = ExportStage(make_config(), [metrics])  # console mode, stdout quiet: nothing submitted
    registry = CollectorRegistry()
    for collector in stage.collectors():
        registry.register(collector)
    port = _free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield stage, registry, port
    server.shutdown()
    stage.stop(1)


def _promtool(text: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=30)


def test_promtool_accepts_text_and_openmetrics(exposed: tuple[ExportStage, CollectorRegistry, int]) -> None:
    require(shutil.which("promtool") is not None, "promtool (Debian package prometheus)")
    _stage, registry, _port = exposed
    text = generate_latest(registry)
    assert b"http_server_request_duration_seconds_bucket{" in text
    assert b'telegen_export_dropped_items_total{reason="queue_full",signal="traces"} 0.0' in text
    assert b"tcp_connections_opened_total{" in text
    result = _promtool(text)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool 2.42 parses stdin as text 0.0.4 only: OpenMetrics parses, and its one complaint is
    # the format's own difference (counter HELP names the family without `_total`).
    om = generate_openmetrics(registry)
    assert om.rstrip().endswith(b"# EOF") and b"# UNIT http_server_request_duration_seconds seconds" in om
    result = _promtool(om)
    complaints = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert all(line.endswith("_total no help text") for line in complaints), complaints


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_real_prometheus_scrapes_red_series(exposed: tuple[ExportStage, CollectorRegistry, int],
                                            tmp_path: Path) -> None:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    require(Path(binary).exists(), "the prometheus server binary (Debian package prometheus)")
    _stage, _registry, target_port = exposed
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: telegen\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        up: list[dict[str, Any]] = []
        red: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                up = _query(base, 'up{job="telegen"}')
                red = _query(base, 'http_server_request_duration_seconds_bucket{le="+Inf"}')
            except OSError:
                pass
            if up and up[0]["value"][1] == "1" and red:
                break
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", (tmp_path / "prometheus.log").read_text()[-2000:]
        assert red, "no RED series scraped"
        labels = {r["metric"]["http_response_status_code"]: r for r in red}
        assert set(labels) == {"200", "500"}
        assert labels["200"]["metric"]["service_name"] == "users"
        assert labels["200"]["value"][1] == "40"
        queued = _query(base, 'telegen_export_queue_capacity{signal="traces"}')
        assert queued and queued[0]["value"][1] == "1000"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
