"""The whole agent, as a user runs it: `telegen run` against a reference OTLP receiver,
real processes talking HTTP over loopback, a busybox httpd in Docker, SIGTERM at the end."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import have_docker, require
from tests.e2e.agent_harness import RunningAgent, free_port
from tests.otlp_receiver import OtlpReceiver

pytestmark = [pytest.mark.bpf, pytest.mark.root]

def spans_for(receiver: OtlpReceiver, port: int, want: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        with receiver.lock:
            got = [r for r in receiver.spans
                   if any(a.key == "server.port" and a.value.int_value == port for a in r.span.attributes)]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def attrs(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def test_ready_fast_and_healthy(agent: RunningAgent) -> None:
    assert agent.ready_seconds < 30
    status, body = agent.get("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    ready = json.loads(agent.get("/ready")[1])
    assert ready["checks"]["ebpf"] == "ok" and ready["checks"]["otlp"] in ("ok", "failed: no export yet")
    # each busy thread is told apart by the kernel's name for it (top -H, ps -L, perf)
    task = Path(f"/proc/{agent.proc.pid}/task")
    names = {(entry / "comm").read_text().strip() for entry in task.iterdir()}
    assert {"processing", "ringbuf", "governor", "api", "export-traces"} <= names, names


def test_spans_red_and_trace_link(agent: RunningAgent, receiver: OtlpReceiver, http_server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", http_server, timeout=5)
    for path in ("/api/users/12345", "/api/users/67890", "/orders/abc-1"):  # keep-alive
        conn.request("GET", path, headers={"User-Agent": "telegen-e2e"})
        conn.getresponse().read()
    conn.close()
    fresh = http.client.HTTPConnection("127.0.0.1", http_server, timeout=5)
    fresh.request("GET", "/fail")
    fresh.getresponse().read()
    fresh.close()
    got = spans_for(receiver, http_server, 8)
    servers = [r for r in got if r.span.kind == 2]
    clients = [r for r in got if r.span.kind == 3]
    assert len(servers) == 4 and len(clients) == 4, [r.span.name for r in got]
    names = sorted(r.span.name for r in servers)
    assert names == ["GET /api/users/{id}", "GET /api/users/{id}", "GET /fail", "GET /orders/{order}"]
    s = next(r for r in servers if attrs(r.span)["url.path"] == "/api/users/12345")
    a = attrs(s.span)
    assert a["http.request.method"] == "GET" and a["http.response.status_code"] == 200
    assert a["http.route"] == "/api/users/{id}" and a["url.scheme"] == "http"
    assert a["network.protocol.version"] == "1.1" and a["user_agent.original"] == "telegen-e2e"
    assert a["client.address"] == "127.0.0.1" and a["network.peer.address"] == "127.0.0.1"
    assert a["http.response.body.size"] == 100
    assert s.span.end_time_unix_nano > s.span.start_time_unix_nano > (time.time() - 300) * 1e9
    fail = next(r for r in servers if attrs(r.span)["url.path"] == "/fail")
    assert attrs(fail.span)["error.type"] == "500" and fail.span.status.code == 2
    # the client and server spans of each call share a trace, server as the child
    by_id = {r.span.span_id: r for r in clients}
    for srv in servers:
        parent = by_id.get(srv.span.parent_span_id)
        assert parent is not None and parent.span.trace_id == srv.span.trace_id
    assert s.resource.get("process.pid") or s.resource.get("service.name")
    # RED histograms over OTLP and on /metrics
    assert receiver.wait_for_metric_points(1, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with receiver.lock:
            names_seen = {r.item.name for r in receiver.metrics}
        if "http.server.request.duration" in names_seen:
            break
        time.sleep(0.5)
    assert "http.server.request.duration" in names_seen
    status, text = agent.get("/metrics")
    assert status == 200 and "http_server_request_duration_seconds_bucket" in text
    assert 'http_route="/api/users/{id}"' in text and "/api/users/12345" not in text


def test_hostile_bytes_counted_agent_healthy(agent: RunningAgent, http_server: int) -> None:
    for payload in (b"GET /\x01bad HTTP/9.9\r\n\r\n", b"GET " + b"A" * 70000 + b" HTTP/1.1\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(200)):
        with socket.create_connection(("127.0.0.1", http_server)) as c:
            c.sendall(payload)
            c.settimeout(2)
            with contextlib.suppress(OSError):
                c.recv(4096)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _, text = agent.get("/metrics")
        if "telegen_decode_errors_total{" in text:
            break
        time.sleep(0.3)
    assert "telegen_decode_errors_total{" in text
    assert agent.get("/healthz")[0] == 200


def test_container_spans_carry_container_identity(agent: RunningAgent, receiver: OtlpReceiver) -> None:
    require(have_docker(), "a running Docker engine (make setup starts dockerd)")
    from tests.docker_images import busybox_image

    image = busybox_image()
    port = free_port()
    cid = subprocess.run(["docker", "run", "-d", "--rm", "--network", "host", "--name", f"telegen-httpd-{port}",
                          image, "sh", "-c", f"mkdir -p /www && echo hi > /www/index.html && "
                                            f"exec httpd -f -p 127.0.0.1:{port} -h /www"],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        subprocess.run(["docker", "run", "--rm", "--network", "host", image, "wget", "-qO-",
                        f"http://127.0.0.1:{port}/index.html"], check=True, capture_output=True, timeout=60)
        got = spans_for(receiver, port, 2, timeout=15)
        server = [r for r in got if r.span.kind == 2]
        assert server, f"no SERVER span from the busybox httpd container: {[r.span.name for r in got]}"
        assert server[0].resource.get("container.id") == cid
        assert server[0].resource.get("container.name") == f"telegen-httpd-{port}"
        assert any(r.span.kind == 3 for r in got)  # wget's CLIENT span, from the other container
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def test_status_ebpf_reports_attach_methods(agent: RunningAgent) -> None:
    status, body = agent.get("/status/ebpf")
    ebpf = json.loads(body)
    assert status == 200 and ebpf["enabled"] is True
    assert ebpf["kernel"]["kprobes"] is False  # this kernel has none
    attached = [p for p in ebpf["programs"] if p["attached"]]
    assert all(p["reason"].startswith("kprobes not available in this kernel") for p in attached)
    # HTTP: the sock length pair (raw tracepoints) dispatching the data syscalls by id, and
    # inet_sock_set_state standing in for accept/connect/close; TCP: its own tracepoints, with
    # accept attribution on inet_sock_set_state too. No syscalls:* tracepoint at all (each one
    # sends every syscall on the node down the slow path) and no raw_syscalls pair.
    assert not [p["target"] for p in attached if p["target"].startswith(("syscalls:", "raw_syscalls:"))]
    http = {p["target"]: p for p in attached if p["name"].startswith("http_")}
    assert {t: p["type"] for t, p in http.items()} == {
        "sock:sock_recv_length": "raw_tracepoint", "sock:sock_send_length": "raw_tracepoint",
        "sock:inet_sock_set_state": "tracepoint"}
    assert {s["name"] for s in http["sock:sock_recv_length"]["syscalls"]} == {"read", "readv", "recvfrom", "recvmsg"}
    assert {s["name"] for s in http["sock:inet_sock_set_state"]["syscalls"]} == {"accept4", "accept", "connect",
                                                                                "close"}
    assert {p["type"] for p in attached if not p["name"].startswith("http_")} <= {"tracepoint"}
    assert ebpf["ringbuf"]["events_received"] > 0
    # the records read and not yet decoded: every one offered is waiting, taken or dropped
    queue = ebpf["http"]["queue"]
    assert queue["produced"] > 0 and queue["capacity"] > 0
    assert queue["produced"] == queue["size"] + queue["taken"] + sum(queue["dropped"].values())


def test_every_agent_thread_runs_in_the_background(agent: RunningAgent) -> None:
    # set before the first thread starts, so the BCC compile, gRPC, aiohttp and discovery
    # threads started later inherit it; /status reports what the kernel says
    tids = [int(entry.name) for entry in Path(f"/proc/{agent.proc.pid}/task").iterdir()]
    assert len(tids) > 5 and {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_BATCH}
    status = json.loads(agent.get("/status")[1])["cpu_scheduling"]
    assert status["mode"] == "background"
    assert list(status["threads"]) == ["batch"] and status["threads"]["batch"] >= len(tids) - 2
    assert list(status["slices_ms"]) == ["10"] and status["slices_ms"]["10"] >= len(tids) - 2


def test_sigterm_exits_zero_within_grace(agent: RunningAgent) -> None:
    agent.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert agent.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 11
