"""Decode, metrics, log records, the L4<->L7 index, and the service map, without a kernel."""

from __future__ import annotations

import errno
import socket
import struct

from telegen.api.status import mermaid
from telegen.assemble.tcp import ConnectionIndex, PeerFolder, TcpMetrics, log_records
from telegen.assemble.topology import Topology, workload
from telegen.capture.layouts import (
    EVENT_TCP_CONNECTION,
    ROLE_CLIENT,
    ROLE_SERVER,
    TCP_CONNECTION,
    TCP_OUTCOME_CLOSED,
    TCP_OUTCOME_FAILED,
    TCP_SOCK_STATE,
)
from telegen.decode.tcp_records import TcpConnection, TcpDecoder
from telegen.signals import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, AttrValue, SpanRecord, make_resource


def record(role: int = ROLE_CLIENT, outcome: int = TCP_OUTCOME_CLOSED, local: str = "127.0.0.1",
           peer: str = "127.0.0.1", lport: int = 40000, pport: int = 8080, established: int = 2_000_000,
           sent: int = 10, received: int = 20, retrans: int = 0, rst: tuple[int, int] = (0, 0), error: int = 0,
           sock_id: int = 0xFFFF0001, pid: int = 42) -> bytes:
    return struct.pack(TCP_CONNECTION.format, EVENT_TCP_CONNECTION, role, socket.AF_INET, outcome, pid, 7,
                       1_000_000, established, 1_000_000_000, sent, received, retrans, 55,
                       socket.inet_aton(local) + bytes(12), socket.inet_aton(peer) + bytes(12), lport, pport,
                       rst[0], rst[1], sock_id, error, 0, bytes(5))


def conn(**kw: object) -> TcpConnection:
    return TcpDecoder().decode([record(**kw)])[0]  # type: ignore[arg-type]


def test_decode_fields_and_rejects() -> None:
    dec = TcpDecoder()
    got = dec.decode([record(), b"short", record()[:-1] + b"", bytes([9]) + record()[1:]])
    assert len(got) == 1
    c = got[0]
    assert (c.local_addr, c.local_port, c.peer_addr, c.peer_port) == ("127.0.0.1", 40000, "127.0.0.1", 8080)
    assert c.connect_ns == 1_000_000 and c.bytes_sent == 10 and c.srtt_us == 55 and c.pid == 42
    assert c.four_tuple() == ("127.0.0.1", 40000, "127.0.0.1", 8080)
    assert dec.errors["tcp_record_size"] == 2 and dec.errors["tcp_event_type"] == 1


def test_decode_live_skips_closed_and_unestablished() -> None:
    def state(established: int, end: int) -> bytes:
        return struct.pack(TCP_SOCK_STATE.format, ROLE_SERVER, socket.AF_INET, 0, 0, 5, 6, 100, established, end,
                           3, 0, 0, socket.inet_aton("10.0.0.1") + bytes(12), socket.inet_aton("10.0.0.2") + bytes(12),
                           80, 5555, 0, 0, 0)
    live = TcpDecoder().decode_live([(1, state(200, 0)), (2, state(0, 0)), (3, state(200, 300))], 1000)
    assert [c.sock_id for c in live] == [1] and live[0].retransmits == 3 and live[0].end_ns == 1000


def test_failure_reasons() -> None:
    assert conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.ECONNREFUSED).failure == "refused"
    assert conn(outcome=TCP_OUTCOME_FAILED, established=0, rst=(0, 1)).failure == "refused"
    assert conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.ETIMEDOUT).failure == "timeout"
    assert conn(outcome=TCP_OUTCOME_FAILED, established=0).failure == "timeout"
    assert conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.EHOSTUNREACH).failure == "unreachable"
    assert conn(rst=(1, 0)).failure == "reset"
    assert conn().failure == ""


def points(metrics: TcpMetrics) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for fam in metrics.collect_metrics():
        out.setdefault(fam.name, []).extend(fam.points)
    return out


def test_metrics_open_counted_once_across_live_and_close() -> None:
    m = TcpMetrics()
    res = make_resource({"service.name": "a"})
    c = conn(sent=100, received=200)
    m.observe_live([(c, res)])
    m.observe_live([(c, res)])
    p = points(m)
    assert p["telegen.tcp.connections.active"][0].value == 1  # type: ignore[attr-defined]
    m.observe([(c, res)])
    m.observe_live([])
    p = points(m)
    assert sum(x.value for x in p["telegen.tcp.connections.opened"]) == 1  # type: ignore[attr-defined]
    assert p["telegen.tcp.connect.duration"][0].count == 1  # type: ignore[attr-defined]
    assert p["telegen.tcp.bytes.sent"][0].value == 100 and p["telegen.tcp.bytes.received"][0].value == 200  # type: ignore[attr-defined]
    assert "telegen.tcp.connections.active" not in p
    attrs = p["telegen.tcp.bytes.sent"][0].attributes  # type: ignore[attr-defined]
    assert attrs == {"telegen.tcp.direction": "client", "server.address": "127.0.0.1", "server.port": 8080}


def test_metrics_failures_resets_retransmits() -> None:
    m = TcpMetrics()
    m.observe([(conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.ECONNREFUSED), ()),
               (conn(rst=(0, 1), retrans=4, role=ROLE_SERVER, lport=8080, pport=40000), ())])
    p = points(m)
    failed = {x.attributes["error.type"]: x.value for x in p["telegen.tcp.connections.failed"]}  # type: ignore[attr-defined]
    assert failed == {"refused": 1, "reset": 1}
    assert p["telegen.tcp.retransmits"][0].value == 4  # type: ignore[attr-defined]
    assert p["telegen.tcp.resets"][0].attributes["telegen.tcp.reset.direction"] == "received"  # type: ignore[attr-defined]
    server_attrs = p["telegen.tcp.retransmits"][0].attributes  # type: ignore[attr-defined]
    assert server_attrs == {"telegen.tcp.direction": "server", "server.port": 8080}


def test_external_peers_fold_beyond_cap() -> None:
    folder = PeerFolder(max_peers=2)
    assert folder.fold("203.0.113.1", 443) == ("203.0.113.1", 443)
    assert folder.fold("203.0.113.2", 443) == ("203.0.113.2", 443)
    assert folder.fold("203.0.113.3", 443) == ("_other", None)
    assert folder.fold("127.0.0.1", 9999) == ("127.0.0.1", 9999)  # local peers never fold
    assert folder.folded == 1


def test_log_records_severity_and_kinds() -> None:
    logs = log_records([conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.ECONNREFUSED),
                        conn(rst=(1, 0)), conn(retrans=3), conn()], offset_ns=10)
    assert [(x.event_name, x.severity_text) for x in logs] == [
        ("telegen.tcp.connect.failed", "WARN"), ("telegen.tcp.reset", "WARN"), ("telegen.tcp.retransmits", "INFO")]
    assert logs[0].attributes["error.type"] == "refused" and logs[0].pid == 42
    assert logs[0].time_ns == 1_000_000_010 and "8080" in logs[0].body


def test_connection_index_joins_both_sides_and_refreshes_on_miss() -> None:
    client = conn(retrans=2)
    server = conn(role=ROLE_SERVER, lport=8080, pport=40000, retrans=5)
    calls: list[int] = []
    idx = ConnectionIndex(refresh=lambda: calls.append(1) or [server])  # type: ignore[func-returns-value]
    idx.add([client])
    key = ("127.0.0.1", 40000, "127.0.0.1", 8080)
    assert idx.lookup(key, True) == (0.001, 2)
    assert idx.lookup(key, False) == (0.001, 5) and calls == [1]
    assert idx.lookup(("1.1.1.1", 1, "2.2.2.2", 2), True) is None


def span(kind: int, resource: dict[str, AttrValue], peer: str, peer_port: int, server_port: int, ms: float,
         error: bool = False) -> SpanRecord:
    return SpanRecord(b"t" * 16, b"s" * 8, b"", "GET /", kind, 0, int(ms * 1e6),
                      {"network.peer.address": peer, "network.peer.port": peer_port, "server.port": server_port},
                      make_resource(resource), STATUS_ERROR if error else 0)


def test_workload_names() -> None:
    assert workload(make_resource({"k8s.namespace.name": "default", "k8s.deployment.name": "api",
                                   "container.name": "c"})) == {"id": "default/api", "kind": "deployment",
                                                                "namespace": "default"}
    assert workload(make_resource({"container.name": "web", "process.executable.name": "nginx"}))["id"] == "web"  # type: ignore[index]
    assert workload(make_resource({"process.executable.name": "curl"})) == {"id": "curl", "kind": "process"}
    assert workload(()) is None


def test_topology_edges_from_connections_and_spans() -> None:
    now = [1000.0]
    topo = Topology(lambda a: a.startswith("127."), clock=lambda: now[0])
    front: dict[str, AttrValue] = {"process.executable.name": "front"}
    api: dict[str, AttrValue] = {"container.name": "api"}
    cli = conn(lport=40000, pport=8080)
    srv = conn(role=ROLE_SERVER, lport=8080, pport=40000)
    ext = conn(peer="203.0.113.7", pport=443)
    refused = conn(outcome=TCP_OUTCOME_FAILED, established=0, error=errno.ECONNREFUSED, pport=9)
    topo.observe_connections([(cli, make_resource(front)), (srv, make_resource(api)),
                              (ext, make_resource(front)), (refused, make_resource(front))])
    topo.observe_spans([span(SPAN_KIND_CLIENT, front, "127.0.0.1", 8080, 8080, ms)
                        for ms in (1.0, 2.0, 3.0, 100.0)])
    topo.observe_spans([span(SPAN_KIND_CLIENT, front, "127.0.0.1", 8080, 8080, 5.0, error=True),
                        span(SPAN_KIND_SERVER, api, "127.0.0.1", 40000, 8080, 4.0),  # local client: not again
                        span(SPAN_KIND_SERVER, api, "198.51.100.9", 5000, 8080, 7.0)])
    snap = topo.snapshot()
    edges = {(e["source"], e["target"]): e for e in snap["edges"]}
    e = edges[("front", "api")]
    assert (e["connections"], e["requests"], e["errors"], e["protocol"], e["port"]) == (1, 5, 1, "http", 8080)
    assert e["p50_ms"] == 3.0 and e["p99_ms"] == 100.0
    assert edges[("front", "external/203.0.113.7:443")]["connections"] == 1
    assert edges[("front", "local/9")]["errors"] == 1
    assert edges[("external/198.51.100.9", "api")]["requests"] == 1
    assert {n["id"]: n["kind"] for n in snap["nodes"]}["api"] == "container"
    assert snap["window_seconds"] == 300
    text = mermaid(snap)
    assert text.startswith("graph LR\n") and '["front"]' in text and "http:8080, 1 conn, 5 req, 1 err" in text
    now[0] += 301  # the window slides: everything ages out
    assert topo.snapshot()["edges"] == []
