"""Shedding end to end: an agent held to a tiny CPU budget under load sheds span work in the
kernel, says so in /status/ebpf, and still counts every exchange; RED stays unbiased."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, have_bcc, have_root, require
from tests.e2e.agent_harness import RunningAgent
from tests.otlp_receiver import OtlpReceiver, attrs_dict

SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3  # OTLP Span.SpanKind

pytestmark = [pytest.mark.bpf, pytest.mark.root]
LOAD_SECONDS = 4
MIN_REQUESTS = 20_000  # below this the RED estimate's spread at the floor exceeds 22 % of the count


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
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk; make setup installs it)")
    before = _http(tight_agent)
    red_before = _red_count(tight_agent, http_server)
    shed_seen, shedding_since = 0, 0
    # One keep-alive connection as fast as it goes: tens of thousands of requests, most of them
    # drawn at the floor's keep rate, so the weighted RED count below has a small spread.
    load = subprocess.Popen(["wrk", "-t1", "-c1", f"-d{LOAD_SECONDS}s", f"http://127.0.0.1:{http_server}/shed/x"],
                            stdout=subprocess.PIPE, text=True)
    while load.poll() is None:
        shed_seen = max(shed_seen, _http(tight_agent)["shed_permille"])
        shedding_since = shedding_since or (time.time_ns() if shed_seen else 0)
        time.sleep(0.2)
    out = load.stdout.read() if load.stdout else ""
    done = re.search(r"(\d+) requests in", out)
    assert load.returncode == 0 and done, out
    requests = int(done.group(1))
    assert requests >= MIN_REQUESTS, f"{requests} requests: too few for the RED check below to mean anything"
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
    # both sides of every request counted in the kernel, shed or not (the one wrk had in flight
    # when it stopped, and other traffic, may add a few)
    exchanges = after["exchanges"] - before["exchanges"]
    assert 2 * requests <= exchanges <= 2 * requests + 50, (exchanges, requests)
    # RED histograms are weighted by the sampling rate: the server count estimates the requests.
    # At the floor (1 kept in 1,000, weight 1,000) n requests draw about n / 1,000 kept ones, so
    # the estimate's spread is about 1,000 * sqrt(n / 1,000): 9 % at the ~120k requests wrk makes
    # here (five runs: 0.79-1.17 of the count). With 6,000 sequential requests it was about 30 %,
    # and a CI run failed at 0.34.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _red_count(tight_agent, http_server) - red_before < requests * 0.5:
        time.sleep(0.5)
    estimate = _red_count(tight_agent, http_server) - red_before
    assert requests * 0.5 <= estimate <= requests * 1.5, (estimate, requests)
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
