"""A running `telegen run` for end-to-end tests and the HTTP server code they talk to
(fixtures in tests/e2e/conftest.py)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import textwrap
import time
from pathlib import Path

from tests.conftest import REPO
from tests.otlp_receiver import OtlpReceiver

SERVER_CODE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall per request
    def do_GET(self):
        code = 500 if "/fail" in self.path else 200
        body = b"ok" * 50
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningAgent:
    def __init__(self, tmp: Path, receiver: OtlpReceiver, ebpf_yaml: str = "") -> None:
        """ebpf_yaml: extra `agent.ebpf` keys as `key: value` lines (e.g. a tiny cpu_budget)."""
        self.port = free_port()
        cfg = tmp / "config.yaml"
        cfg.write_text(f"""
self_telemetry:
  listen: "127.0.0.1:{self.port}"
otlp:
  endpoint: "{receiver.endpoint}"
  insecure: true
  compression: none
export:
  traces: {{interval: 0.2}}
  metrics: {{interval: 1}}
  console: {{enabled: false}}
agent:
  http:
    routes: [{{pattern: "/orders/{{order}}"}}]
  ebpf:
    enabled: true
{textwrap.indent(ebpf_yaml, "    ")}
discovery:
  kubernetes: {{enabled: false}}
""")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "telegen"), "run", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.ready_seconds = self._wait_ready()

    def _wait_ready(self) -> float:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                if self.get("/ready")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("agent not ready within 60 s")

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
