"""Self-test: load the HTTP probes with automatic attach-method choice (or the one --attach
forces), make one HTTP/1.1 exchange on loopback, and report what was chosen and captured (used
by the QEMU tests and handy on a new node: `python -m telegen.capture.selftest --json`)."""

from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import sys
import threading
import time
from typing import Any, get_args

from telegen.assemble.http_parse import DecodeError, parse_request, parse_response
from telegen.capture.probes import AttachType
from telegen.capture.stage import CaptureStage
from telegen.config import EbpfConfig
from telegen.decode.records import RecordDecoder
from telegen.pipeline import BoundedQueue


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"telegen selftest\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


def run(timeout: float = 10.0, attach: AttachType | None = None) -> dict[str, Any]:
    cfg = EbpfConfig(ringbuf_pages=64, max_connections=4096)
    records: BoundedQueue[bytes] = BoundedQueue("selftest", 4096)
    # Exclude nothing: the exchange below is made by this very process.
    stage = CaptureStage(cfg, records, self_pid=0, force_method=attach)
    started = time.monotonic()
    stage.start()
    load_seconds = time.monotonic() - started
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    conn.request("GET", "/selftest")
    conn.getresponse().read()
    conn.close()
    decoder = RecordDecoder(cfg.capture_bytes)
    exchanges: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(e["path"] == "/selftest" for e in exchanges):
        time.sleep(0.2)
        for ex in decoder.decode(records.get_batch(4096)):
            try:
                req, resp = parse_request(ex.request), parse_response(ex.response)
            except DecodeError:
                continue
            if ex.pid != os.getpid():
                continue  # the node's other traffic is not this test's
            exchanges.append({"role": "server" if ex.role == 1 else "client", "method": req.method,
                              "path": req.target, "status": resp.status, "pid": ex.pid,
                              "local": f"{ex.local_addr}:{ex.local_port}", "peer": f"{ex.peer_addr}:{ex.peer_port}"})
    server.shutdown()
    status = stage.status()
    stage.stop(2.0)
    return {"kernel": status["kernel"], "load_seconds": round(load_seconds, 2), "programs": status["programs"],
            "exchanges": exchanges, "ringbuf": status["ringbuf"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telegen.capture.selftest")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--attach", choices=get_args(AttachType), help="force this attach method")
    args = parser.parse_args(argv)
    report = run(args.timeout, args.attach)
    if args.json:
        print(json.dumps(report))
    else:
        kinds = sorted({p["type"] for p in report["programs"] if p["attached"]})
        print(f"kernel {report['kernel']['release']} kprobes={report['kernel']['kprobes']} attach={kinds}")
        for ex in report["exchanges"]:
            print(f"  {ex['role']}: {ex['method']} {ex['path']} -> {ex['status']}")
    return 0 if any(e["path"] == "/selftest" for e in report["exchanges"]) else 1


if __name__ == "__main__":
    sys.exit(main())
