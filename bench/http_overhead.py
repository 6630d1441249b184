"""HTTP capture overhead: nginx on loopback serving 1 KiB, telegen off and on, interleaved A B A B ... A.

    .venv/bin/python bench/http_overhead.py                      # full run, about 3 minutes
    .venv/bin/python bench/http_overhead.py --rounds 2 --fixed-duration 10 --rate 2000 --wrk-duration 10

Two regimes (issue 4, Performance):

1. fixed rate: bench/loadgen.c (built with ``cc`` into the temp directory; keep-alive, request i
   due at t0 + i/rate on connection i % C, latencies to the nanosecond) pinned to CPU 1.
   ``--fixed-tool hey`` uses Debian's ``hey`` (``-c C -q rate/C``) as earlier runs did: it
   prints latencies to 0.1 ms and its own p99 is about 0.8 ms against nginx's 25 µs, which hid
   the agent's effect on the tail. ``--fixed-tool python`` uses this file's asyncio generator.
   Reports agent CPU ms per 1,000 requests, p99 ON/OFF, spans collected per request sent (each
   request is two exchanges the agent sees: nginx's SERVER side and the load generator's CLIENT
   side), events lost.
2. saturation: Debian's ``wrk -t1 -c32`` pinned to CPU 1. Reports throughput ON/OFF, kernel
   exchange count vs wrk's request count, shed ratio. This host changes speed within minutes,
   so besides the bracketed ratio each ON run is compared with the OFF runs at its own speed,
   told by the kernel's softirq cost per request (``throughput_ratio_phase_matched``).

nginx (``/usr/sbin/nginx``, master + 1 worker) is pinned to CPU 0. The agent is not pinned. In
ON rounds the agent exports over OTLP/gRPC with its default settings (no compression) to bench/otlp_sink.py,
a receiver that discards what it gets, pinned to CPU 1 with the load generator at idle priority
(SCHED_IDLE: it stands in for a collector elsewhere; see OtlpSink).
The agent is started fresh for each ON round (start-to-ready is measured each time) and
stopped before the next OFF round. The summary is printed as JSON and written to
bench/results/http_overhead.json. Not part of the test suite; needs root (BPF).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TELEGEN = ROOT / ".venv" / "bin" / "telegen"
NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
HEY = "/usr/bin/hey"
LOADGEN_SOURCE = ROOT / "bench" / "loadgen.c"
BODY_PATH = "/1k.bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- load generator

def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[i]


async def _loadgen(port: int, rate: float, duration: float, connections: int) -> dict:
    host = "127.0.0.1"
    request = (f"GET {BODY_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "User-Agent: telegen-bench\r\n\r\n").encode()
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0
    completed = 0

    async def worker() -> None:
        nonlocal errors, completed
        reader, writer = await asyncio.open_connection(host, port)
        while True:
            scheduled = await queue.get()
            if scheduled is None:
                writer.close()
                return
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m:
                    await reader.readexactly(int(m.group(1)))
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                latencies.append(time.perf_counter() - scheduled)
                completed += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(0.05)  # connections up before the clock starts
    interval = 1.0 / rate
    total = int(rate * duration)
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        now = time.perf_counter()
        due = min(total, int((now - t0) / interval) + 1)
        while sent < due:
            queue.put_nowait(t0 + sent * interval)
            sent += 1
        next_at = t0 + sent * interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    send_end = time.perf_counter()
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), timeout=30)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    ms = 1000.0
    return {
        "target_rate": rate, "connections": connections, "sent": sent, "completed": completed,
        "errors": errors, "send_seconds": round(send_end - t0, 3), "elapsed_s": round(elapsed, 3),
        "achieved_rate": round(completed / elapsed, 1),
        "p50_ms": round(_pct(latencies, 0.50) * ms, 4), "p90_ms": round(_pct(latencies, 0.90) * ms, 4),
        "p99_ms": round(_pct(latencies, 0.99) * ms, 4), "p999_ms": round(_pct(latencies, 0.999) * ms, 4),
        "max_ms": round(latencies[-1] * ms, 4) if latencies else None,
    }


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_cpu_ticks() -> dict[str, int]:
    """The node's CPU time so far by kind (/proc/stat's first line, in clock ticks)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    return dict(zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"),
                    map(int, fields), strict=True))


def host_phase(before: dict[str, int], after: dict[str, int], requests: int) -> dict:
    """The kernel's own cost per request over a load, which tells this host's speed apart.

    The host moves between two speeds within minutes (wrk OFF about 115k or 190k req/s); at the
    slower one the loopback path itself costs more: softirq 4.5-5.6 µs per request against
    2.1-2.3, whether the agent runs or not (its programs run in the syscalls, not in softirq,
    except a few per connection). So an ON round is compared with the OFF rounds of its own
    speed (phase_matched_ratios)."""
    us = {k: (after[k] - before[k]) * 1e6 / CLK_TCK / max(1, requests) for k in ("softirq", "system")}
    return {"softirq_us_per_req": round(us["softirq"], 2), "system_us_per_req": round(us["system"], 2)}


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its live children (all threads included)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Nginx:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "nginx"
        (self.dir / "www").mkdir(parents=True)
        (self.dir / "www" / BODY_PATH.lstrip("/")).write_bytes(b"x" * 1024)
        self.port = free_port()
        d = self.dir
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {d}/www;
        location / {{ }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", NGINX, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
             "-c", str(self.dir / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                status, body = http_get(f"http://127.0.0.1:{self.port}{BODY_PATH}", timeout=1)
                if status == 200 and len(body) == 1024:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not come up: " + (self.dir / "error.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class OtlpSink:
    """bench/otlp_sink.py in a subprocess on the load generator's core, at SCHED_IDLE.

    It stands in for a collector on another machine, which costs this node nothing; a 2-core
    node has no core to spare for it, so it takes only the time the workload leaves idle. At
    normal priority it alone lifted fixed-rate p99 by about 0.15 ms (`hey` shares its core):
    interleaved, 8 rounds each, p99 medians 0.8 ms without an agent, 0.9 agent without export,
    1.0 exporting to an idle-priority sink, 1.15 to a normal one. The agent's own export work
    (encoding, the gRPC calls) still runs at normal priority and is still counted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", "chrt", "--idle", "0", sys.executable, str(ROOT / "bench" / "otlp_sink.py"),
             "--port", str(self.port)],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("OTLP sink did not start")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


@contextlib.contextmanager
def nginx_and_sink(prefix: str) -> Iterator[tuple[Path, Nginx, OtlpSink]]:
    """A work directory, nginx and the OTLP sink, for the benchmarks that rotate agent modes."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # nginx's worker runs as www-data and must read the docroot
    nginx, sink = Nginx(workdir), None
    try:
        nginx.start()
        sink = OtlpSink()
        yield workdir, nginx, sink
    finally:
        if sink:
            sink.stop()
        nginx.stop()


def write_result(script: str, output: str, started: float, summary: dict, rounds: list[dict] | dict,
                 **context: object) -> None:
    """The JSON file of a rotated-modes benchmark (machine, date, command, any `context` of the
    run, summary, raw rounds)."""
    result = {
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": " ".join([".venv/bin/python", f"bench/{script}", *sys.argv[1:]]),
        **context,
        "wall_s": round(time.time() - started, 1),
        "summary": summary,
        "rounds": rounds,
    }
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


class Agent:
    def __init__(self, workdir: Path, index: int, otlp_endpoint: str = "", extra_yaml: str = "",
                 otlp_compression: str = "none") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"agent-{index}.yaml"
        self.config.write_text(f"""\
self_telemetry:
  listen: "127.0.0.1:{self.port}"
otlp:
  endpoint: "{otlp_endpoint}"
  compression: {otlp_compression}
export:
  console:
    enabled: false
discovery:
  kubernetes: {{enabled: false}}
  docker: {{enabled: false}}
{extra_yaml}""")
        self.log = workdir / f"agent-{index}.log"
        self.proc: subprocess.Popen | None = None
        self.start_to_ready_s: float | None = None

    def start(self, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        self.proc = subprocess.Popen([str(TELEGEN), "run", "--config", str(self.config)],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if http_get(self.base + "/ready", timeout=1)[0] == 200:
                    self.start_to_ready_s = round(time.monotonic() - t0, 2)
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("agent not ready in time: " + self.log.read_text()[-2000:])

    def snapshot(self) -> dict:
        cpu_s = proc_cpu_seconds(self.proc.pid)  # before this snapshot's own API calls
        status = json.loads(http_get(self.base + "/status/ebpf")[1])
        export = json.loads(http_get(self.base + "/status/export")[1])
        metrics = http_get(self.base + "/metrics")[1].decode()
        m = re.search(r"^telegen_spans_collected_total\s+(\S+)", metrics, re.M)
        return {
            "events_lost": status["ringbuf"]["events_lost"],
            "lost_by_reason": status["ringbuf"].get("lost_by_reason"),
            "dropped_in_agent": status["ringbuf"].get("dropped_in_agent"),
            "exchanges": status["http"]["exchanges"],
            "emitted": status["http"].get("emitted"),
            "sampled_out": status["http"]["sampled_out"],
            # queued records re-drawn at the kernel's new rate after a cut (emitted = spans + thinned)
            "thinned": status["http"].get("shedding", {}).get("thinned"),
            "shed_permille": status["http"]["shed_permille"],
            "spans_collected": float(m.group(1)) if m else float("nan"),
            "spans_exported": export["queues"]["traces"]["exported"],
            "spans_export_dropped": export["queues"]["traces"]["dropped"],
            "cpu_s": cpu_s,
        }

    def queues(self) -> tuple[int | None, dict]:
        """(records waiting for decode, or None from an agent whose /status/ebpf lacks http.queue;
        the traces export queue's counts)."""
        http = json.loads(http_get(self.base + "/status/ebpf")[1])["http"]
        traces = json.loads(http_get(self.base + "/status/export")[1])["queues"]["traces"]
        size = http["queue"]["size"] if "queue" in http else None
        return size, traces

    def wait_drained(self, timeout: float = 10.0) -> dict:
        """Wait until what the load left is worked off: its records decoded, then every span
        offered for export by then exported (or dropped), after the ring buffer's 50 ms timer and
        the 250 ms idle sweep have had their turn. Not "until the counts stop moving": these
        polls are HTTP calls, and their own client exchanges (the bench's end) are spans too, so
        the counts never stopped and the wait ran to its timeout, counting 10 s of an idle agent
        answering polls as the load's drain."""
        time.sleep(0.4)
        deadline = time.monotonic() + timeout
        offered = None
        while time.monotonic() < deadline:
            waiting, traces = self.queues()
            if offered is None and not waiting:
                offered = traces["produced"]  # the polls' own spans come after these
            if offered is not None and traces["exported"] + traces["dropped"] >= offered:
                break
            time.sleep(0.25)
        return self.snapshot()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- regimes

def run_fixed(port: int, args: argparse.Namespace) -> dict:
    tools = {"loadgen": run_c_loadgen, "hey": run_hey, "python": run_python_loadgen}
    return tools[args.fixed_tool](port, args)


def build_loadgen() -> Path:
    """bench/loadgen.c compiled, once per version of the source (kept in the temp directory)."""
    source = LOADGEN_SOURCE.read_bytes()
    binary = Path(tempfile.gettempdir()) / f"telegen-loadgen-{hashlib.sha256(source).hexdigest()[:12]}"
    if not binary.exists():
        partial = binary.with_suffix(f".{os.getpid()}")
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(partial), str(LOADGEN_SOURCE)], check=True)
        partial.replace(binary)
    return binary


def run_c_loadgen(port: int, args: argparse.Namespace) -> dict:
    binary = build_loadgen()
    out = subprocess.run(["taskset", "-c", "1", str(binary), str(port), BODY_PATH, str(args.rate),
                          str(args.connections), str(args.fixed_duration)],
                         capture_output=True, text=True, timeout=args.fixed_duration + 60)
    if out.returncode != 0:
        raise RuntimeError("loadgen failed: " + out.stderr[-2000:])
    result = json.loads(out.stdout)
    return {"tool": "loadgen", **result}


def run_hey(port: int, args: argparse.Namespace) -> dict:
    workers = args.connections
    out = subprocess.run(
        ["taskset", "-c", "1", HEY, "-z", f"{args.fixed_duration}s", "-c", str(workers),
         "-q", str(args.rate / workers), "-disable-compression", f"http://127.0.0.1:{port}{BODY_PATH}"],
        capture_output=True, text=True, timeout=args.fixed_duration + 60)
    text = out.stdout
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    m_ok = re.search(r"\[200\]\s+(\d+) responses", text)
    pct = {q: float(v) * 1000 for q, v in re.findall(r"(\d+)% in ([\d.]+) secs", text)}
    errors = sum(int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text) if code != "200")
    errors += sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+Get", text, re.M))
    if not (m_rps and m_ok and "99" in pct):
        raise RuntimeError("could not parse hey output: " + text[-2000:] + out.stderr[-2000:])
    return {"tool": "hey", "target_rate": args.rate, "connections": workers, "completed": int(m_ok.group(1)),
            "errors": errors, "achieved_rate": round(float(m_rps.group(1)), 1), "p50_ms": round(pct["50"], 4),
            "p90_ms": round(pct["90"], 4), "p99_ms": round(pct["99"], 4)}


def run_python_loadgen(port: int, args: argparse.Namespace) -> dict:
    out = subprocess.run(
        ["taskset", "-c", "1", sys.executable, __file__, "--loadgen", "--port", str(port),
         "--rate", str(args.rate), "--fixed-duration", str(args.fixed_duration),
         "--connections", str(args.connections)],
        capture_output=True, text=True, timeout=args.fixed_duration + 120)
    if out.returncode != 0:
        raise RuntimeError("loadgen failed: " + out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_wrk(port: int, args: argparse.Namespace) -> dict:
    out = subprocess.run(
        ["taskset", "-c", "1", WRK, "-t1", f"-c{args.wrk_connections}", f"-d{args.wrk_duration}s",
         "--latency", f"http://127.0.0.1:{port}{BODY_PATH}"],
        capture_output=True, text=True, timeout=args.wrk_duration + 60)
    text = out.stdout
    m_req = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    m_p99 = re.search(r"^\s+99%\s+([\d.]+)(\w+)", text, re.M)
    m_err = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    m_sock = re.search(r"Socket errors: (.*)", text)
    if not (m_req and m_rps):
        raise RuntimeError("could not parse wrk output: " + text + out.stderr)
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    return {
        "requests": int(m_req.group(1)), "rps": float(m_rps.group(1)),
        "p99_ms": round(float(m_p99.group(1)) * unit.get(m_p99.group(2), float("nan")), 3) if m_p99 else None,
        "non_2xx": int(m_err.group(1)) if m_err else 0,
        "socket_errors": m_sock.group(1).strip() if m_sock else None,
    }


def run_wrk_with_phase(port: int, args: argparse.Namespace) -> tuple[dict, dict]:
    """run_wrk, and the host's speed over it (host_phase)."""
    ticks = node_cpu_ticks()
    load = run_wrk(port, args)
    return load, host_phase(ticks, node_cpu_ticks(), load["requests"])


def run_regime(regime: str, port: int, args: argparse.Namespace) -> dict:
    """{"load": ...} for the fixed rate, {"load": ..., "host": ...} for saturation."""
    if regime == "fixed":
        return {"load": run_fixed(port, args)}
    load, host = run_wrk_with_phase(port, args)
    return {"load": load, "host": host}


def measure(regime: str, on: bool, nginx: Nginx, workdir: Path, index: int,
            args: argparse.Namespace) -> dict:
    row: dict = {"regime": regime, "agent": "on" if on else "off"}
    if not on:
        return row | run_regime(regime, nginx.port, args)
    sink = OtlpSink() if args.export == "otlp" else None
    agent = Agent(workdir, index, f"127.0.0.1:{sink.port}" if sink else "")
    try:
        agent.start()
        row["start_to_ready_s"] = agent.start_to_ready_s
        time.sleep(args.settle)
        before = agent.snapshot()
        t0 = time.monotonic()
        row |= run_regime(regime, nginx.port, args)
        window = time.monotonic() - t0
        at_end = agent.snapshot()
        drained = agent.wait_drained()
        row["rss_mib_end"] = rss_mib(agent.proc.pid)
        d = {k: drained[k] - before[k] for k in ("events_lost", "exchanges", "sampled_out",
                                                 "spans_collected", "emitted", "thinned", "dropped_in_agent",
                                                 "spans_exported", "spans_export_dropped")
             if isinstance(before.get(k), (int, float))}
        row["agent"] = "on"
        row["window_s"] = round(window, 2)
        row["agent_cpu_s_window"] = round(at_end["cpu_s"] - before["cpu_s"], 3)
        row["agent_cpu_s_incl_drain"] = round(drained["cpu_s"] - before["cpu_s"], 3)
        row["agent_cores_window"] = round(row["agent_cpu_s_window"] / window, 3)
        row["delta"] = d
        row["shed_permille_end"] = at_end["shed_permille"]
        row["lost_by_reason_total"] = drained["lost_by_reason"]
        reqs = row["load"]["completed"] if regime == "fixed" else row["load"]["requests"]
        row["requests"] = reqs
        row["agent_cpu_ms_per_1k_req"] = round(1000 * row["agent_cpu_s_incl_drain"] / reqs * 1000, 2)
        row["agent_cpu_ms_per_1k_req_window"] = round(1000 * row["agent_cpu_s_window"] / reqs * 1000, 2)
        row["exchanges_per_request"] = round(d["exchanges"] / reqs, 5)  # expect ~2 (server + client)
        row["spans_per_request"] = round(d["spans_collected"] / reqs, 5)  # expect ~2 unless shed
        row["spans_per_exchange"] = round(d["spans_collected"] / max(1, d["exchanges"]), 5)
        row["shed_ratio"] = round(d["sampled_out"] / max(1, d["exchanges"]), 5)
    finally:
        agent.stop()
        if sink:
            row["otlp_sink"] = sink.stop()
    return row


def pair_ratios(off: list[dict], on: list[dict], key: str) -> dict:
    """ON/OFF of each interleaved pair, with their median."""
    ratios = [round(b["load"][key] / a["load"][key], 3) for a, b in zip(off, on, strict=True) if a["load"][key]]
    return {"each": ratios, "median": round(statistics.median(ratios), 3) if ratios else None}


# Two OFF rounds further apart than this say the host changed speed between them: this VM
# moves between about 115k and 195k req/s at saturation, a few times a minute at worst.
BRACKET_TOLERANCE = 0.05


def bracketed_ratios(off: list[dict], on: list[dict], key: str) -> dict:
    """Each ON round against the mean of the OFF rounds just before and just after it. A round
    whose two OFF neighbours disagree by more than BRACKET_TOLERANCE straddled a change of the
    host's speed: it is left out of the median, and counted."""
    each: list[float] = []
    left_out = 0
    for before, row, after in zip(off, on, off[1:], strict=False):
        a, c = before["load"][key], after["load"][key]
        if not a or not c:
            continue
        if abs(a / c - 1) > BRACKET_TOLERANCE:
            left_out += 1
            continue
        each.append(round(row["load"][key] / ((a + c) / 2), 3))
    return {"each": each, "median": round(statistics.median(each), 3) if each else None, "left_out": left_out}


# Two runs are at the same host speed when their softirq cost per request is this close.
PHASE_TOLERANCE = 0.15


def phase_matched_ratios(off: list[dict], on: list[dict]) -> dict:
    """Each ON round's throughput against the median of the OFF rounds at the same host speed
    (softirq cost per request within PHASE_TOLERANCE, host_phase), from anywhere in the run. An
    ON round with no such OFF round (the host changed speed during it) is left out, and counted.
    Each ratio comes with its softirq cost, so the two speeds read apart."""
    each: list[dict] = []
    left_out = 0
    for row in on:
        phase = row["host"]["softirq_us_per_req"]
        same = [r["load"]["rps"] for r in off
                if phase and abs(r["host"]["softirq_us_per_req"] / phase - 1) <= PHASE_TOLERANCE]
        if not same:
            left_out += 1
            continue
        each.append({"softirq_us_per_req": phase, "off_runs": len(same),
                     "ratio": round(row["load"]["rps"] / statistics.median(same), 3)})
    ratios = [e["ratio"] for e in each]
    return {"each": each, "median": round(statistics.median(ratios), 3) if ratios else None, "left_out": left_out}


def summarize(rows: list[dict]) -> dict:
    def on_off(regime: str) -> tuple[list[dict], list[dict]]:
        sel = [r for r in rows if r["regime"] == regime]
        return [r for r in sel if r["agent"] == "off"], [r for r in sel if r["agent"] == "on"]

    out: dict = {}
    off, on = on_off("fixed")
    if off and on:
        p99_off = statistics.median(r["load"]["p99_ms"] for r in off)
        p99_on = statistics.median(r["load"]["p99_ms"] for r in on)
        out["fixed_rate"] = {
            "target_rate": on[0]["load"]["target_rate"],
            "achieved_rate_off": [r["load"]["achieved_rate"] for r in off],
            "achieved_rate_on": [r["load"]["achieved_rate"] for r in on],
            "p99_ms_off": [r["load"]["p99_ms"] for r in off],
            "p99_ms_on": [r["load"]["p99_ms"] for r in on],
            "p99_ratio_on_off_median": round(p99_on / p99_off, 3),
            # each ON round against the OFF round just before it: the host's drift between
            # rounds (this VM's OFF p99 moved 1.0-4.4 ms within an hour) cancels within a pair
            "p99_ratio_pairs": pair_ratios(off[:len(on)], on, "p99_ms"),
            "p99_ratio_bracketed": bracketed_ratios(off, on, "p99_ms"),
            "p50_ms_off": [r["load"]["p50_ms"] for r in off],
            "p50_ms_on": [r["load"]["p50_ms"] for r in on],
            "agent_cpu_ms_per_1k_req": [r["agent_cpu_ms_per_1k_req"] for r in on],
            "agent_cpu_ms_per_1k_req_window_only": [r["agent_cpu_ms_per_1k_req_window"] for r in on],
            "spans_per_request": [r["spans_per_request"] for r in on],
            "exchanges_per_request": [r["exchanges_per_request"] for r in on],
            "span_coverage_of_both_sides": [round(r["spans_per_request"] / 2, 5) for r in on],
            "events_lost": [r["delta"]["events_lost"] for r in on],
            "sampled_out": [r["delta"]["sampled_out"] for r in on],
            "spans_exported_per_request": [round(r["delta"]["spans_exported"] / r["requests"], 5) for r in on],
            "spans_export_dropped": [r["delta"]["spans_export_dropped"] for r in on],
            "errors": [r["load"]["errors"] for r in off + on],
        }
    off, on = on_off("saturation")
    if off and on:
        rps_off = statistics.median(r["load"]["rps"] for r in off)
        rps_on = statistics.median(r["load"]["rps"] for r in on)
        out["saturation"] = {
            "rps_off": [r["load"]["rps"] for r in off],
            "rps_on": [r["load"]["rps"] for r in on],
            "throughput_ratio_on_off_median": round(rps_on / rps_off, 3),
            "throughput_ratio_pairs": pair_ratios(off[:len(on)], on, "rps"),
            "throughput_ratio_bracketed": bracketed_ratios(off, on, "rps"),
            "throughput_ratio_phase_matched": phase_matched_ratios(off, on),
            "softirq_us_per_req_off": [r["host"]["softirq_us_per_req"] for r in off],
            "wrk_requests_on": [r["load"]["requests"] for r in on],
            "kernel_exchanges_on": [r["delta"]["exchanges"] for r in on],
            "exchanges_per_wrk_request": [r["exchanges_per_request"] for r in on],
            "spans_collected_on": [r["delta"]["spans_collected"] for r in on],
            "shed_ratio": [r["shed_ratio"] for r in on],
            "shed_permille_at_end": [r["shed_permille_end"] for r in on],
            "events_lost": [r["delta"]["events_lost"] for r in on],
            "agent_cores_during_load": [r["agent_cores_window"] for r in on],
            "agent_cpu_ms_per_1k_req": [r["agent_cpu_ms_per_1k_req"] for r in on],
            "p99_ms_off": [r["load"]["p99_ms"] for r in off],
            "p99_ms_on": [r["load"]["p99_ms"] for r in on],
        }
    all_on = [r for r in rows if r["agent"] == "on"]
    out["agent"] = {
        "start_to_ready_s": [r["start_to_ready_s"] for r in all_on],
        "rss_mib_end": [r["rss_mib_end"] for r in all_on],
    }
    return out


def main() -> int:
    global TELEGEN  # --telegen: Agent.start runs it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="OFF/ON pairs per regime")
    parser.add_argument("--rate", type=float, default=5000, help="fixed-rate requests/s")
    parser.add_argument("--fixed-tool", choices=("loadgen", "hey", "python"), default="loadgen")
    parser.add_argument("--export", choices=("otlp", "none"), default="otlp",
                        help="ON rounds export over OTLP to bench/otlp_sink.py (default) or not at all")
    parser.add_argument("--fixed-duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50, help="fixed-rate keep-alive connections")
    parser.add_argument("--wrk-duration", type=int, default=10)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after /ready before load")
    parser.add_argument("--regimes", default="fixed,saturation")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "http_overhead.json"))
    parser.add_argument("--telegen", default=str(TELEGEN),
                        help="the agent to measure (default: this checkout's); another commit's, to compare "
                             "two commits with the same harness")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    TELEGEN = Path(args.telegen)

    if args.loadgen:
        print(json.dumps(asyncio.run(_loadgen(args.port, args.rate, args.fixed_duration,
                                              args.connections))))
        return 0

    for tool in (NGINX, WRK, str(TELEGEN)):
        if not Path(tool).exists():
            print(f"missing {tool}", file=sys.stderr)
            return 2
    workdir = Path(tempfile.mkdtemp(prefix="telegen-bench-"))
    workdir.chmod(0o755)  # nginx's worker runs as www-data and must read the docroot
    nginx = Nginx(workdir)
    rows: list[dict] = []
    started = time.time()
    loadavg_start = os.getloadavg()
    try:
        nginx.start()
        # warm-up, agent off: page cache, nginx worker, connection paths
        subprocess.run(["taskset", "-c", "1", WRK, "-t1", "-c8", "-d1s",
                        f"http://127.0.0.1:{nginx.port}{BODY_PATH}"], capture_output=True)
        index = 0
        for regime in args.regimes.split(","):
            # OFF ON OFF ON ... OFF: each ON round has an OFF round on either side (bracketed_ratios)
            for rnd, on in [(r, on) for r in range(args.rounds) for on in (False, True)] + [(args.rounds, False)]:
                index += 1
                row = measure(regime, on, nginx, workdir, index, args)
                row["round"] = rnd + 1
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                time.sleep(1.0)
    finally:
        nginx.stop()
    result = {
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version(),
                    "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()},
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": " ".join([".venv/bin/python", "bench/http_overhead.py", *sys.argv[1:]]),
        "params": {k: v for k, v in vars(args).items() if k not in ("loadgen", "port")},
        "wall_s": round(time.time() - started, 1),
        "summary": summarize(rows),
        "rows": rows,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
