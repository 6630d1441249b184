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
from tests.otlp_receiver import OtlpReceiver, attrs_dict

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3  # OTLP Span.SpanKind

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


def test_tiny_budget_sheds_but_counts_every_exchange(tight_agent: RunningAgent, http_server: int,
                                                     receiver: OtlpReceiver) -> None:
    before = _http(tight_agent)
    red_before = _red_count(tight_agent, http_server)
    shed_seen, shedding_since = 0, 0
    conn = http.client.HTTPConnection("127.0.0.1", http_server, timeout=5)
    for i in range(REQUESTS):
        conn.request("GET", f"/shed/{i % 7}")
        conn.getresponse().read()
        if i % 250 == 0:
            shed_seen = max(shed_seen, _http(tight_agent)["shed_permille"])
            shedding_since = shedding_since or (time.time_ns() if shed_seen else 0)
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
    shedding = json.loads(tight_agent.get("/status/ebpf")[1])["http"]["shedding"]
    assert shedding["budget_cores"] == 0.005 and shedding["record_cost_us"] > 0, shedding
    assert shedding["thinned"] >= 0, shedding  # queued records re-drawn after a cut, counted
    assert re.search(r"^telegen_http_exchanges_thinned_total ", tight_agent.get("/metrics")[1], re.M)
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
    _kept_calls_stay_whole(receiver, shedding_since)


def _kept_calls_stay_whole(receiver: OtlpReceiver, since_ns: int) -> None:
    """A server on this node takes its client's draw in the kernel: a kept server span has its client."""
    time.sleep(3.0)  # the last batches
    shed = [r.span for r in list(receiver.spans) if r.span.start_time_unix_nano > since_ns
            and str(attrs_dict(r.span.attributes).get("url.path", "")).startswith("/shed/")]
    clients = {s.span_id for s in shed if s.kind == SPAN_KIND_CLIENT}
    servers = [s for s in shed if s.kind == SPAN_KIND_SERVER]
    assert len(clients) >= 10 and len(servers) >= 10, f"{len(clients)} client, {len(servers)} server spans kept"
    whole = sum(1 for s in servers if s.parent_span_id in clients)
    # independent draws would pair about the kept share (often under 10 % here); a connection's
    # first request may find no client yet (docs/capture.md)
    assert whole >= 0.8 * len(servers), f"{whole} of {len(servers)} kept server spans have their client"
