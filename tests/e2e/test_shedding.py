"""Shedding end to end: an agent held to a tiny CPU budget under load sheds span work in the
kernel, says so in /status/ebpf, and still counts every exchange; RED stays unbiased."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, have_bcc, have_root, require
from tests.e2e.agent_harness import RunningAgent
from tests.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.bpf, pytest.mark.root]
REQUESTS = 6000


@pytest.fixture(scope="module")
def tight_agent(receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc)")
    require((REPO / ".venv" / "bin" / "telegen").exists(), ".venv/bin/telegen (run make setup)")
    running = RunningAgent(tmp_path_factory.mktemp("agent"), receiver,
                           ebpf_yaml="cpu_budget: 0.005\ncpu_budget_saturated: 0.005\n")
    yield running
    if running.proc.poll() is None:
        running.proc.kill()


def _http(agent: RunningAgent) -> dict[str, int]:
    return dict(json.loads(agent.get("/status/ebpf")[1])["http"])


def _red_count(agent: RunningAgent, port: int) -> float:
    text = agent.get("/metrics")[1]
    total = 0.0
    for line in text.splitlines():
        if line.startswith("http_server_request_duration_seconds_count{") and f'server_port="{port}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_tiny_budget_sheds_but_counts_every_exchange(tight_agent: RunningAgent, http_server: int) -> None:
    before = _http(tight_agent)
    red_before = _red_count(tight_agent, http_server)
    shed_seen = 0
    conn = http.client.HTTPConnection("127.0.0.1", http_server, timeout=5)
    for i in range(REQUESTS):
        conn.request("GET", f"/shed/{i % 7}")
        conn.getresponse().read()
        if i % 500 == 0:
            shed_seen = max(shed_seen, _http(tight_agent)["shed_permille"])
    conn.close()
    # the idle sweep completes the last exchanges; then the counters stop moving
    deadline, last = time.monotonic() + 15, -1
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _http(tight_agent)
        shed_seen = max(shed_seen, now["shed_permille"])
        if now["exchanges"] == last:
            break
        last = now["exchanges"]
    after = _http(tight_agent)
    assert shed_seen > 0, "the agent never shed although its budget is 0.005 cores"
    assert after["sampled_out"] > before["sampled_out"]
    # both sides of every request counted in the kernel, shed or not (other traffic may add a few)
    exchanges = after["exchanges"] - before["exchanges"]
    assert 2 * REQUESTS <= exchanges <= 2 * REQUESTS + 50, exchanges
    # RED histograms are weighted by the sampling rate: the server count estimates REQUESTS
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _red_count(tight_agent, http_server) - red_before < REQUESTS * 0.5:
        time.sleep(0.5)
    estimate = _red_count(tight_agent, http_server) - red_before
    assert REQUESTS * 0.5 <= estimate <= REQUESTS * 1.5, estimate
    text = tight_agent.get("/metrics")[1]
    assert re.search(r"^telegen_\w*shed\w* ", text, re.M), "shedding must show on /metrics"
