"""Agent start-up: seconds from spawning `telegen run` to the first 200 from /healthz and from
/ready, and the per-phase timings the agent reports in /status `startup`; prints JSON.

Two configurations, interleaved: `bench` (the agent config of bench/http_overhead.py: no OTLP
endpoint, Docker and Kubernetes discovery off) and `defaults` (no config file: the embedded
defaults, as `make run`, on :19090, which must be free).

Run: .venv/bin/python -m bench.startup [--starts 5] [--configs bench,defaults]   (root; not a test)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TELEGEN = REPO / ".venv" / "bin" / "telegen"
BENCH_CONFIG = """\
self_telemetry:
  listen: "127.0.0.1:{port}"
otlp:
  endpoint: ""
export:
  console:
    enabled: false
discovery:
  kubernetes: {{enabled: false}}
  docker: {{enabled: false}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def start_once(kind: str, workdir: Path, index: int) -> dict[str, Any]:
    if kind == "bench":
        port = free_port()
        cfg = workdir / "bench.yaml"
        cfg.write_text(BENCH_CONFIG.format(port=port))
        args = [str(TELEGEN), "run", "--config", str(cfg)]
    else:
        port, args = 19090, [str(TELEGEN), "run"]
    log = workdir / f"{kind}-{index}.log"
    row: dict[str, Any] = {"config": kind, "load_before": round(os.getloadavg()[0], 2)}
    began = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        while time.monotonic() - began < 120:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if "healthz_s" not in row and get(port, "/healthz")[0] == 200:
                    row["healthz_s"] = round(time.monotonic() - began, 3)
                if get(port, "/ready")[0] == 200:
                    row["ready_s"] = round(time.monotonic() - began, 3)
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise RuntimeError(f"not ready in 120 s: {log.read_text()[-2000:]}")
        row["startup"] = get(port, "/status")[1].get("startup")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    phases: dict[str, list[float]] = {}
    for row in rows:
        for p in (row.get("startup") or {}).get("phases", []):
            phases.setdefault(p["name"], []).append(p["seconds"])
    return {
        "starts": len(rows),
        "ready_s_median": statistics.median(r["ready_s"] for r in rows),
        "ready_s": [r["ready_s"] for r in rows],
        "healthz_s_median": statistics.median(r["healthz_s"] for r in rows),
        "phase_s_median": {name: round(statistics.median(v), 3) for name, v in phases.items()},
        "load_before": [r["load_before"] for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--configs", default="bench,defaults")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between starts")
    args = parser.parse_args()
    kinds = args.configs.split(",")
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="telegen-startup-") as tmp:
        for i in range(args.starts):
            for kind in kinds:
                rows[kind].append(start_once(kind, Path(tmp), i))
                time.sleep(args.pause)
    print(json.dumps({"summary": {k: summary(v) for k, v in rows.items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
