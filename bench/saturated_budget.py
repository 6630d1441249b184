"""Saturation throughput against `agent.ebpf.cpu_budget_saturated`: no agent, then one agent per
budget in rotated order, then no agent again, in each round (nginx and wrk as in
bench/http_overhead.py: nginx on CPU 0, `wrk -t1 -c32` and the OTLP sink on CPU 1).

    .venv/bin/python bench/saturated_budget.py --budgets 0.03,0.01 --rounds 10

Each agent's throughput is divided by the mean of its round's two OFF runs. A round whose two
OFF runs differ by more than 5 %, or whose runs were not all at one host speed (softirq time per
request, see http_overhead.host_phase: this host changes speed within minutes), is reported but
left out of the medians. Per budget: the medians of the ratio and of the agent's cores over the wrk
run (its onset included), the kernel's shed rate at the end, and events lost; per budget after
the first, the paired differences with the first. Needs root (BPF). Not part of the test suite.
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


def timed_wrk(nginx: ho.Nginx, args: argparse.Namespace) -> dict:
    """wrk's throughput and the host's speed over it (softirq per request, ho.host_phase)."""
    load, host = ho.run_wrk_with_phase(nginx.port, args)
    return {"rps": load["rps"], "softirq_us_per_req": host["softirq_us_per_req"]}


def one_speed(runs: list[float]) -> bool:
    """All of a round's runs at one host speed: softirq per request within ho.PHASE_TOLERANCE of
    the round's median (the two speeds are about 2.2 and 5 µs apart; runs at one vary ±10 %)."""
    mid = statistics.median(runs) if runs else 0.0
    return mid > 0 and all(abs(r / mid - 1) <= ho.PHASE_TOLERANCE for r in runs)


def run_agent(budget: str, nginx: ho.Nginx, sink: ho.OtlpSink, workdir: Path, index: int,
              args: argparse.Namespace) -> dict:
    agent = ho.Agent(workdir, index, f"127.0.0.1:{sink.port}",
                     extra_yaml=f"agent:\n  ebpf:\n    cpu_budget_saturated: {budget}\n")
    try:
        agent.start()
        time.sleep(args.settle)
        cpu0 = ho.proc_cpu_seconds(agent.proc.pid)
        load = timed_wrk(nginx, args)
        cores = (ho.proc_cpu_seconds(agent.proc.pid) - cpu0) / args.wrk_duration
        http = json.loads(ho.http_get(agent.base + "/status/ebpf")[1])
        return {"budget": budget, "rps": load["rps"], "softirq_us_per_req": load["softirq_us_per_req"],
                "agent_cores": round(cores, 4), "shed_permille_end": http["http"]["shed_permille"],
                "events_lost": http["ringbuf"]["events_lost"]}
    finally:
        agent.stop()


def summarize(rounds: list[dict], budgets: list[str]) -> dict:
    clean = [r for r in rounds if r["clean"]]
    out: dict = {"rounds": len(rounds), "clean_rounds": len(clean), "budgets": {}}
    for b in budgets:
        ratios = [r["ratio"][b] for r in clean]
        out["budgets"][b] = {
            "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            "ratios": sorted(round(x, 3) for x in ratios),
            "agent_cores_median": statistics.median(r["agents"][b]["agent_cores"] for r in rounds),
            "events_lost_total": sum(r["agents"][b]["events_lost"] for r in rounds),
        }
    for b in budgets[1:]:
        diffs = [r["ratio"][b] - r["ratio"][budgets[0]] for r in clean]
        out["budgets"][b][f"paired_minus_{budgets[0]}"] = {
            "each": sorted(round(x, 3) for x in diffs), "median": round(statistics.median(diffs), 3) if diffs else None}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.03,0.01", help="cores, comma-separated; the first is the reference")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--wrk-duration", type=int, default=4)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after /ready before load")
    parser.add_argument("--output", default=str(ho.ROOT / "bench" / "results" / "saturated_budget.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (BPF)", file=sys.stderr)
        return 2
    budgets = args.budgets.split(",")
    rounds: list[dict] = []
    started = time.time()
    with ho.nginx_and_sink("telegen-budget-") as (workdir, nginx, sink):
        for rnd in range(args.rounds):
            order = budgets[rnd % len(budgets):] + budgets[:rnd % len(budgets)]
            first = timed_wrk(nginx, args)
            agents = {}
            for i, b in enumerate(order):
                agents[b] = run_agent(b, nginx, sink, workdir, rnd * 10 + i, args)
                time.sleep(0.5)
            last = timed_wrk(nginx, args)
            off = [first["rps"], last["rps"]]
            speeds = [first["softirq_us_per_req"], last["softirq_us_per_req"],
                      *(a["softirq_us_per_req"] for a in agents.values())]
            row = {"round": rnd + 1, "order": order, "off_rps": off, "softirq_us_per_req": speeds,
                   # every run of the round at one speed, the agents' included: a round the host
                   # sped up or slowed down in compares nothing
                   "clean": abs(off[0] / off[1] - 1) <= ho.BRACKET_TOLERANCE and one_speed(speeds),
                   "ratio": {b: agents[b]["rps"] / statistics.mean(off) for b in budgets}, "agents": agents}
            rounds.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    ho.write_result("saturated_budget.py", args.output, started, summarize(rounds, budgets), rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
