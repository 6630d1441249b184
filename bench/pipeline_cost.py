"""CPU per exchange of the agent's Python span path, without the kernel or the network.

Packs realistic http_exchange_event records (an nginx server and its keep-alive client on
loopback, as bench/http_overhead.py produces them), then runs them through the same objects
the agent wires together: decode -> build spans -> enrich -> RED -> service map -> OTLP
encoding. Reports thread CPU microseconds per exchange for each step, so a change to one
step shows up in its own line. Run: `.venv/bin/python bench/pipeline_cost.py`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from telegen import config as config_mod  # noqa: E402
from telegen.assemble.http import HttpSpanBuilder  # noqa: E402
from telegen.assemble.red import RedMetrics  # noqa: E402
from telegen.assemble.routes import RouteResolver  # noqa: E402
from telegen.assemble.span_groups import SpanGroups  # noqa: E402
from telegen.assemble.tcp import ConnectionIndex  # noqa: E402
from telegen.assemble.topology import Topology  # noqa: E402
from telegen.capture.layouts import (  # noqa: E402
    EVENT_HTTP_EXCHANGE,
    HTTP_FLAG_HAS_RESPONSE,
    ROLE_CLIENT,
    ROLE_SERVER,
    TCP_OUTCOME_OPEN,
    http_exchange_layout,
)
from telegen.decode.records import RecordDecoder  # noqa: E402
from telegen.decode.tcp_records import TcpConnection  # noqa: E402
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage  # noqa: E402
from telegen.export import otlp_encode  # noqa: E402

CAP = 256
REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: hey/0.0.1\r\nContent-Type: text/html\r\n" \
          b"Accept-Encoding: gzip\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 12:00:00 GMT\r\n" \
           b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\nLast-Modified: Mon, 23 Nov 2026 " \
           b"11:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6751-400\"\r\nAccept-Ranges: bytes\r\n\r\n"


def records(count: int, connections: int, server_pid: int, client_pid: int) -> list[bytes]:
    layout = http_exchange_layout(CAP)
    pack = struct.Struct(layout.format).pack
    lo = socket.inet_pton(socket.AF_INET, "127.0.0.1").ljust(16, b"\0")
    out = []
    t = 1_000_000_000
    for i in range(count // 2):
        port = 40000 + i % connections
        t += 200_000
        # the kernel's ids: the server end carries its client's trace id and span id (call_ids)
        trace_id, client_span, server_span = os.urandom(16), os.urandom(8), os.urandom(8)
        for role, pid, lport, pport, start, end, span_id, parent in (
                (1, server_pid, 8080, port, t + 20_000, t + 80_000, server_span, client_span),
                (2, client_pid, port, 8080, t, t + 100_000, client_span, bytes(8))):
            out.append(pack(EVENT_HTTP_EXCHANGE, role, HTTP_FLAG_HAS_RESPONSE, socket.AF_INET, pid, pid, 7, 1,
                            start, start + 30_000, end, len(REQUEST), len(RESPONSE) + 1024, lo, lo, lport, pport,
                            len(REQUEST), min(CAP, len(RESPONSE)), 1000, b"", trace_id, span_id, parent,
                            REQUEST[:CAP], RESPONSE[:CAP]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024, help="records per processing batch")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-tcp-join", action="store_true", help="without the L4 connection lookup")
    args = parser.parse_args()

    cfg = config_mod.load(None, env={}).config
    discovery = DiscoveryStage(cfg, None, options=DiscoveryOptions(docker_url="unix:///nonexistent"))
    discovery.docker_enabled = discovery.k8s_enabled = discovery.cloud_enabled = False
    # the benchmark's own pid and its parent's stand in for server and client: /proc lookups succeed
    raw = records(args.exchanges, args.connections, os.getpid(), os.getppid())
    decoder = RecordDecoder(CAP)
    builder = HttpSpanBuilder(RouteResolver([], 100))
    if not args.no_tcp_join:  # the live connections, as the TCP capture would report them
        live = [TcpConnection(role, TCP_OUTCOME_OPEN, pid, 1, 0, 50_000, 0, 0, 0, 0, 30, "127.0.0.1", "127.0.0.1",
                              lport, pport, 0, 0, 0, 0, 0)
                for port in range(40000, 40000 + args.connections)
                for role, pid, lport, pport in ((ROLE_CLIENT, os.getppid(), port, 8080),
                                                (ROLE_SERVER, os.getpid(), 8080, port))]
        builder.connection_lookup = ConnectionIndex(lambda: live).lookup
    red = RedMetrics()
    topology = Topology(lambda addr: addr.startswith("127."))
    gc.freeze()  # as the agent does once it runs: start-up objects leave the collector's scans
    steps = {"decode": 0.0, "build": 0.0, "enrich": 0.0, "red": 0.0, "topology": 0.0, "otlp_encode": 0.0}
    spans_total = 0
    clock = time.thread_time
    for i in range(0, len(raw), args.batch):
        batch = raw[i:i + args.batch]
        t0 = clock()
        exchanges = decoder.decode(batch)
        t1 = clock()
        spans = builder.build(exchanges, 0)
        t2 = clock()
        discovery.enricher.enrich_spans(spans)
        t3 = clock()
        groups = SpanGroups(spans)  # as the processing worker does: once for both
        red.observe_groups(groups)
        t4 = clock()
        topology.observe_groups(groups)
        t5 = clock()
        encoded = otlp_encode.encode_spans(spans)
        payload = encoded if isinstance(encoded, bytes) else encoded.SerializeToString()
        t6 = clock()
        assert payload or not spans
        spans_total += len(spans)
        for name, took in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True):
            steps[name] += took
    n = len(raw)
    result = {name: round(sec * 1e6 / n, 2) for name, sec in steps.items()}
    result["total_us_per_exchange"] = round(sum(steps.values()) * 1e6 / n, 2)
    result["spans_per_exchange"] = round(spans_total / n, 4)
    result["decode_errors"] = dict(builder.decode_errors) | dict(decoder.errors)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
