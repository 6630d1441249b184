"""OTLP trace/log encoding cost per item: generated protobuf classes (before) vs direct wire bytes (now); prints JSON.

Run: .venv/bin/python -m bench.otlp_encode_cost   (not part of the test suite)

"old" is what the sender did per batch: build the message with the generated classes, ByteSize()
for the split decision, then serialize (gRPC's serializer). "new" is otlp_requests.trace_requests:
bytes ready for the wire, split at 4 MiB. Each batch holds fresh records (new string objects,
as from capture) and is encoded once; the memos carry over between batches as in the agent.
Two attribute mixes: "typical" (keep-alive connections, repeating peers, routes, agents) and
"unique" (every port, path and size new: the memo mostly misses). Times are the median over
batches, in µs of thread CPU per item (thread time: other load on the machine is not counted).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from telegen.export.otlp_requests import logs_requests, trace_requests
from telegen.signals import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    LogRecordItem,
    Resource,
    SpanRecord,
    make_resource,
)
from tests.unit.export.reference_encode import encode_logs, encode_spans

MAX_REQUEST_BYTES = 4 * 1024 * 1024
ROUTES = ("/api/users/{id}", "/api/orders", "/api/orders/{id}", "/healthz", "/api/cart/{id}/items",
          "/api/catalog", "/api/catalog/{id}", "/metrics")
AGENTS = ("Go-http-client/1.1", "python-requests/2.32.3",
          "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")


def resources(n: int) -> list[Resource]:
    return [make_resource({
        "service.name": f"svc-{i}", "service.namespace": "shop", "k8s.namespace.name": "shop",
        "k8s.pod.name": f"svc-{i}-7f9c6d5b8-x{i}q2z", "k8s.pod.uid": f"4c1e{i:04d}-aaaa-bbbb-cccc-0123456789ab",
        "k8s.deployment.name": f"svc-{i}", "k8s.node.name": "node-1", "container.id": f"{i:02d}" * 32,
        "container.name": f"svc-{i}", "process.pid": 1000 + i, "process.executable.name": "python3",
        "host.name": "node-1", "telemetry.sdk.name": "telegen"}) for i in range(n)]


class SpanMaker:
    def __init__(self, mix: str, seed: int = 1) -> None:
        self.rng, self.unique = random.Random(seed), mix == "unique"
        self.resources = resources(5)
        self.counter = 0

    def _port(self) -> int:
        self.counter += 1
        return 32768 + self.counter % 28000 if self.unique else 32768 + self.rng.randrange(200)

    def span(self) -> SpanRecord:
        rng = self.rng
        route = ROUTES[rng.randrange(len(ROUTES))]
        ident = self.counter if self.unique else rng.randrange(1000)
        path = route.replace("{id}", str(ident))
        method = "POST" if route == "/api/orders" else "GET"
        server = rng.random() < 0.5
        peer, port = f"10.1.0.{rng.randrange(20)}", self._port()
        status = 500 if rng.random() < 0.01 else 200
        attrs: dict[str, str | int | float | bool] = {
            "http.request.method": method, "url.path": path, "url.scheme": "http", "http.route": route,
            "network.protocol.version": "1.1", "network.peer.address": peer,
            "network.peer.port": port if server else 8080,
            "server.address": f"10.96.0.{rng.randrange(5)}", "server.port": 8080,
        }
        if server:
            attrs["client.address"], attrs["client.port"] = peer, port
        # The L4 join: one connect time per connection (a float), retransmits mostly 0.
        attrs["telegen.tcp.connect.duration"] = rng.random() / 1000 if self.unique else 4e-05 + port % 97 * 1e-06
        attrs["telegen.tcp.retransmits"] = 0
        attrs["user_agent.original"] = AGENTS[rng.randrange(len(AGENTS))]
        attrs["http.request.body.size"] = rng.randrange(100, 2000) if method == "POST" else 0
        sizes = rng.randrange(200, 40000) if self.unique else 200 + 64 * rng.randrange(30)
        attrs["http.response.body.size"] = sizes
        attrs["http.response.status_code"] = status
        start = time.time_ns()
        return SpanRecord(
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
            parent_span_id=rng.randbytes(8) if rng.random() < 0.66 else b"", name=f"{method} {route}",
            kind=SPAN_KIND_SERVER if server else SPAN_KIND_CLIENT, start_ns=start,
            end_ns=start + rng.randrange(100_000, 50_000_000), attributes=attrs,
            resource=self.resources[rng.randrange(len(self.resources))],
            status_code=STATUS_ERROR if status >= 500 else STATUS_UNSET)

    def log(self) -> LogRecordItem:
        rng = self.rng
        return LogRecordItem(
            time_ns=time.time_ns(), severity_number=13, severity_text="WARN",
            body=f"connection reset by peer #{rng.randrange(10**6)}",
            attributes={"network.peer.address": f"10.1.0.{rng.randrange(20)}", "network.peer.port": self._port(),
                        "server.port": 8080}, resource=self.resources[rng.randrange(5)], event_name="tcp.reset")


def _old_spans(batch: Sequence[SpanRecord]) -> int:
    request = encode_spans(batch)
    request.ByteSize()
    return len(request.SerializeToString())


def _old_logs(batch: Sequence[LogRecordItem]) -> int:
    request = encode_logs(batch)
    request.ByteSize()
    return len(request.SerializeToString())


def _per_item_us(batches: Sequence[Sequence[Any]], encode: Callable[[Any], Any]) -> float:
    times = []
    for batch in batches:
        t0 = time.thread_time()
        encode(batch)
        times.append((time.thread_time() - t0) / len(batch))
    return round(statistics.median(times) * 1e6, 3)


def run(mix: str, batch_size: int, batches: int, warmup: int) -> dict[str, Any]:
    maker = SpanMaker(mix)
    for _ in range(warmup // batch_size):  # steady state: the memos hold what keeps recurring
        trace_requests([maker.span() for _ in range(batch_size)], MAX_REQUEST_BYTES)
    span_batches = [[maker.span() for _ in range(batch_size)] for _ in range(batches)]
    log_batches = [[maker.log() for _ in range(batch_size)] for _ in range(max(2, batches // 4))]
    first = span_batches[0]
    same = trace_requests(first, 1 << 40)[0][0] == encode_spans(first).SerializeToString()
    return {
        "mix": mix, "batch_size": batch_size, "batches": batches, "bytes_equal_to_old": same,
        "wire_bytes_per_span": round(len(trace_requests(first, 1 << 40)[0][0]) / batch_size, 1),
        "spans_old_us": _per_item_us(span_batches, _old_spans),
        "spans_new_us": _per_item_us(span_batches, lambda b: trace_requests(b, MAX_REQUEST_BYTES)),
        "logs_old_us": _per_item_us(log_batches, _old_logs),
        "logs_new_us": _per_item_us(log_batches, lambda b: logs_requests(b, MAX_REQUEST_BYTES)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=16384, help="spans encoded untimed first (0: cold memos)")
    args = parser.parse_args()
    rows = [run(mix, size, args.batches, args.warmup) for mix in ("typical", "unique") for size in (512, 4096)]
    print(json.dumps({"rows": rows, "python": sys.version.split()[0]}, indent=2))


if __name__ == "__main__":
    main()
