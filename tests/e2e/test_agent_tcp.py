"""The whole agent with TCP capture: the service map after HTTP traffic, a failed connect as an
OTLP log record, TCP metrics, and /status/ebpf listing the TCP programs beside the HTTP ones."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from tests.e2e.agent_harness import RunningAgent
from tests.otlp_receiver import OtlpReceiver, attrs_dict

pytestmark = [pytest.mark.bpf, pytest.mark.root]


def test_topology_edge_after_http_traffic(agent: RunningAgent, http_server: int) -> None:
    for _ in range(3):  # fresh connections: each is a TCP connection and an HTTP request
        conn = http.client.HTTPConnection("127.0.0.1", http_server, timeout=5)
        conn.request("GET", "/topology-check")
        conn.getresponse().read()
        conn.close()
    deadline = time.monotonic() + 15
    edge = None
    while time.monotonic() < deadline and edge is None:
        topo = json.loads(agent.get("/status/topology")[1])
        edge = next((e for e in topo["edges"] if e["port"] == http_server and e["requests"] >= 3
                     and e["connections"] >= 3), None)
        time.sleep(0.5)
    assert edge is not None, topo
    assert edge["protocol"] == "http" and edge["p50_ms"] is not None and edge["p99_ms"] >= edge["p50_ms"]
    assert not edge["target"].startswith(("local/", "external/"))  # resolved to the server's workload
    assert {edge["source"], edge["target"]} <= {n["id"] for n in topo["nodes"]}
    status, text = agent.get("/status/topology?format=mermaid")
    assert status == 200 and text.startswith("graph LR") and f"http:{http_server}" in text


def test_failed_connect_is_a_log_record_and_a_metric(agent: RunningAgent, receiver: OtlpReceiver) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=2)
    deadline = time.monotonic() + 15
    found = None
    while time.monotonic() < deadline and found is None:
        with receiver.lock:
            for rec in receiver.logs:
                a = attrs_dict(rec.item.attributes)
                if a.get("server.port") == closed_port and a.get("error.type") == "refused":
                    found = rec
        time.sleep(0.3)
    assert found is not None, "no log record for the refused connect"
    assert found.item.severity_text == "WARN" and found.item.severity_number == 13
    assert found.resource.get("process.pid") or found.resource.get("service.name")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, text = agent.get("/metrics")
        if 'error_type="refused"' in text:
            break
        time.sleep(0.5)
    assert "telegen_tcp_connections_failed" in text and 'error_type="refused"' in text
    assert "telegen_tcp_connections_opened" in text


def test_status_ebpf_lists_tcp_programs(agent: RunningAgent) -> None:
    ebpf = json.loads(agent.get("/status/ebpf")[1])
    targets = {p["target"] for p in ebpf["programs"] if p["attached"]}
    assert {"sock:inet_sock_set_state", "tcp:tcp_destroy_sock", "tcp:tcp_retransmit_skb"} <= targets
    assert any(m["name"] == "tcp_socks" for m in ebpf["maps"])
    assert ebpf["tcp"]["connections_opened"] > 0 and ebpf["ringbuf"]["events_lost"] == 0
