"""The agent's CPU scheduling policy (`agent.cpu_scheduling`) against no agent: fixed-rate p99
and saturation throughput, the three modes in rotated order in each round (nginx and the loads
as in bench/http_overhead.py: nginx on CPU 0, the load (bench/loadgen.c, `hey` or `wrk`) and the
OTLP sink on CPU 1).

    .venv/bin/python bench/cpu_scheduling.py --rounds 10

Fixed rate: bench/loadgen.c (or `hey`, --fixed-tool) at --rate req/s for --fixed-duration s;
per mode the median p99, its ratio to the median without an agent, the per-round ratios and the
agent's CPU per 1,000 requests. `hey` prints latencies to 0.1 ms and its own p99 is about
0.8 ms, 30 times nginx's: it hides most of what the agent does to the tail.
Saturation: `wrk` for --wrk-duration s; per mode the median throughput ratio to the round's
run without an agent, over the rounds whose runs were all at one host speed (softirq time per
request, see http_overhead.host_phase).

--separate-cgroups puts the agent in a CPU cgroup of its own and nginx, the loads and this
script in another, as pods on a Kubernetes node are: the scheduler then weighs the two groups
before the threads inside them. Needs root (BPF). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_overhead as ho
from saturated_budget import one_speed

MODES = ("off", "normal", "background")


class CpuCgroups:
    """Two sibling CPU cgroups, `work` and `agent` (cgroup v2, or v1's cpu hierarchy)."""

    def __init__(self) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "cpu" in v2.read_text().split():
            self.root = Path("/sys/fs/cgroup")
            (self.root / "cgroup.subtree_control").write_text("+cpu")
        elif Path("/sys/fs/cgroup/cpu/tasks").exists():
            self.root = Path("/sys/fs/cgroup/cpu")
        else:
            raise RuntimeError("no CPU cgroup controller")
        self.dirs = {name: self.root / f"telegen-bench-{name}" for name in ("work", "agent")}
        for path in self.dirs.values():
            path.mkdir(exist_ok=True)

    def move(self, pid: int, name: str) -> None:
        (self.dirs[name] / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        (self.root / "cgroup.procs").write_text(str(os.getpid()))
        for path in self.dirs.values():
            for pid in (path / "cgroup.procs").read_text().split():
                (self.root / "cgroup.procs").write_text(pid)
            path.rmdir()


def run_mode(mode: str, regime: str, nginx: ho.Nginx, sink: ho.OtlpSink, workdir: Path, index: int,
             args: argparse.Namespace, cgroups: CpuCgroups | None) -> dict:
    agent = None
    if mode != "off":
        agent = ho.Agent(workdir, index, f"127.0.0.1:{sink.port}", extra_yaml=f"agent:\n  cpu_scheduling: {mode}\n")
    try:
        if agent:
            agent.start()
            if cgroups:
                cgroups.move(agent.proc.pid, "agent")  # every thread of it
            time.sleep(args.settle)
            cpu0 = ho.proc_cpu_seconds(agent.proc.pid)
        if regime == "fixed":
            load = ho.run_fixed(nginx.port, args)
            row = {k: load[k] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "scheduled_p99_ms",
                                        "completed", "errors") if k in load}
        else:
            load, host = ho.run_wrk_with_phase(nginx.port, args)
            row = {"rps": load["rps"], "non_2xx": load["non_2xx"], "softirq_us_per_req": host["softirq_us_per_req"]}
        if agent:
            cpu_s = ho.proc_cpu_seconds(agent.proc.pid) - cpu0
            requests = load["completed"] if regime == "fixed" else load["requests"]
            sched = json.loads(ho.http_get(agent.base + "/status")[1])["cpu_scheduling"]
            http = json.loads(ho.http_get(agent.base + "/status/ebpf")[1])
            row |= {"agent_cpu_ms_per_1k": round(cpu_s * 1e6 / max(requests, 1), 2),
                    "threads": sched["threads"], "slices_ms": sched["slices_ms"],
                    "events_lost": http["ringbuf"]["events_lost"]}
        return row
    finally:
        if agent:
            agent.stop()


def summarize(rounds: list[dict], regime: str) -> dict:
    out: dict = {"rounds": len(rounds)}
    if regime == "fixed":
        off = statistics.median(r["off"]["p99_ms"] for r in rounds)
        out["p99_ms_off_median"] = off
        for mode in MODES[1:]:
            p99 = [r[mode]["p99_ms"] for r in rounds]
            out[mode] = {"p99_ms_median": statistics.median(p99), "p99_ms": sorted(p99),
                         "p99_ratio_of_medians": round(statistics.median(p99) / off, 3),
                         "p99_ratio_rounds": sorted(round(r[mode]["p99_ms"] / r["off"]["p99_ms"], 3) for r in rounds),
                         "agent_cpu_ms_per_1k_median": statistics.median(r[mode]["agent_cpu_ms_per_1k"]
                                                                         for r in rounds),
                         "events_lost_total": sum(r[mode]["events_lost"] for r in rounds)}
        return out
    clean = [r for r in rounds if one_speed([r[m]["softirq_us_per_req"] for m in MODES])]
    out["clean_rounds"] = len(clean)
    for mode in MODES[1:]:
        ratios = [r[mode]["rps"] / r["off"]["rps"] for r in clean]
        out[mode] = {"ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                     "ratios": sorted(round(x, 3) for x in ratios),
                     "events_lost_total": sum(r[mode]["events_lost"] for r in rounds)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--regimes", default="fixed,saturation")
    parser.add_argument("--rate", type=float, default=5000, help="fixed-rate requests/s")
    parser.add_argument("--fixed-tool", choices=("loadgen", "hey"), default="loadgen",
                        help="bench/loadgen.c (latencies to the ns) or Debian's hey (to 0.1 ms)")
    parser.add_argument("--connections", type=int, default=50, help="fixed-rate keep-alive connections")
    parser.add_argument("--fixed-duration", type=float, default=10.0)
    parser.add_argument("--wrk-duration", type=int, default=5)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after /ready before load")
    parser.add_argument("--separate-cgroups", action="store_true",
                        help="the agent in a CPU cgroup, nginx and the loads in another")
    parser.add_argument("--output", default=str(ho.ROOT / "bench" / "results" / "cpu_scheduling.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (BPF)", file=sys.stderr)
        return 2
    cgroups = None
    summaries: dict = {}
    rounds_by_regime: dict = {}
    started = time.time()
    try:
        if args.separate_cgroups:
            cgroups = CpuCgroups()
            cgroups.move(os.getpid(), "work")  # the loads, nginx and the sink start from here
        with ho.nginx_and_sink("telegen-sched-") as (workdir, nginx, sink):
            for regime in args.regimes.split(","):
                rounds = []
                for rnd in range(args.rounds):
                    order = MODES[rnd % len(MODES):] + MODES[:rnd % len(MODES)]
                    row: dict = {"round": rnd + 1, "order": order}
                    for i, mode in enumerate(order):
                        row[mode] = run_mode(mode, regime, nginx, sink, workdir, rnd * 10 + i, args, cgroups)
                        time.sleep(0.5)
                    rounds.append(row)
                    print(regime, json.dumps(row), file=sys.stderr, flush=True)
                summaries[regime], rounds_by_regime[regime] = summarize(rounds, regime), rounds
    finally:
        if cgroups:
            cgroups.remove()
    ho.write_result("cpu_scheduling.py", args.output, started, summaries, rounds_by_regime,
                    cgroups=str(cgroups.root) if cgroups else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
