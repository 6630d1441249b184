"""A minimal OTLP/gRPC receiver for benchmarks: accepts every Export call, discards the payload.

It never decodes protobuf, so its own CPU stays small next to the agent it measures. Prints
a JSON line with the request and byte counts per service when stopped (SIGTERM/SIGINT).

    .venv/bin/python bench/otlp_sink.py --port 4317
"""

from __future__ import annotations

import argparse
import collections
import json
import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

SERVICES = ("opentelemetry.proto.collector.trace.v1.TraceService",
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
            "opentelemetry.proto.collector.logs.v1.LogsService")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def handler(service: str) -> grpc.GenericRpcHandler:
        def export(request: bytes, _context: Any) -> bytes:
            with lock:
                counts[f"{service.rsplit('.', 1)[1]}.requests"] += 1
                counts[f"{service.rsplit('.', 1)[1]}.bytes"] += len(request)
            return b""  # an empty Export*ServiceResponse: full success

        # no (de)serializers: requests arrive as bytes, the response goes out as bytes
        return grpc.method_handlers_generic_handler(service, {"Export": grpc.unary_unary_rpc_method_handler(export)})

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([handler(s) for s in SERVICES])
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    server.stop(1)
    print(json.dumps(dict(counts)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
