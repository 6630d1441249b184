"""Where the agent's fixed-rate latency cost comes from: no agent, the agent without an exporter,
exporting over OTLP/gRPC, and exporting with gzip, in rotated order in each round.

nginx, the load and the OTLP sink as in bench/http_overhead.py: nginx on CPU 0, bench/loadgen.c
at --rate req/s and bench/otlp_sink.py on CPU 1 (the sink at SCHED_IDLE). Without an exporter
the agent still captures, decodes, builds, enriches and counts every span (RED, service map)
and then drops them, counted as `disabled`; the difference to `export` is what exporting costs.

    .venv/bin/python bench/fixed_rate_tail.py --rounds 8

Per mode: the median p50, p90 and p99, the p99 ratio of medians against no agent, the per-round
p99 ratios, the agent's CPU per 1,000 requests, and the shed share, the governor's flood cuts
and `events_lost`, which must stay 0: a mode that shed or lost records would look cheaper than
it is. Needs root (BPF). Not part of the test suite.
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

MODES = ("off", "no-export", "export", "export-gzip")


def run_mode(mode: str, nginx: ho.Nginx, sink: ho.OtlpSink, workdir: Path, index: int,
             args: argparse.Namespace) -> dict:
    agent = None
    if mode != "off":
        endpoint = "" if mode == "no-export" else f"127.0.0.1:{sink.port}"
        agent = ho.Agent(workdir, index, endpoint, otlp_compression="gzip" if mode == "export-gzip" else "none")
    try:
        if agent:
            agent.start()
            time.sleep(args.settle)
            cpu0 = ho.proc_cpu_seconds(agent.proc.pid)
            before = json.loads(ho.http_get(agent.base + "/status/ebpf")[1])
        load = ho.run_fixed(nginx.port, args)
        row = {k: load[k] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "completed", "errors") if k in load}
        if agent:
            cpu_s = ho.proc_cpu_seconds(agent.proc.pid) - cpu0
            after = json.loads(ho.http_get(agent.base + "/status/ebpf")[1])
            exchanges = after["http"]["exchanges"] - before["http"]["exchanges"]
            shed = after["http"]["sampled_out"] - before["http"]["sampled_out"]
            cuts = after["http"]["shedding"]["flood_cuts"] - before["http"]["shedding"]["flood_cuts"]
            row |= {"agent_cpu_ms_per_1k": round(cpu_s * 1e6 / max(load["completed"], 1), 2),
                    "shed_share": round(shed / max(exchanges, 1), 5), "flood_cuts": cuts,
                    "events_lost": after["ringbuf"]["events_lost"] - before["ringbuf"]["events_lost"]}
        return row
    finally:
        if agent:
            agent.stop()


def summarize(rounds: list[dict]) -> dict:
    def median(mode: str, key: str) -> float:
        return statistics.median(r[mode][key] for r in rounds)

    off_p99 = median("off", "p99_ms")
    out: dict = {"rounds": len(rounds), "off": {q: median("off", f"{q}_ms") for q in ("p50", "p90", "p99")}}
    for mode in MODES[1:]:
        out[mode] = {q: median(mode, f"{q}_ms") for q in ("p50", "p90", "p99")} | {
            "p99_ratio_of_medians": round(median(mode, "p99_ms") / off_p99, 3),
            "p99_ratio_rounds": sorted(round(r[mode]["p99_ms"] / r["off"]["p99_ms"], 3) for r in rounds),
            "agent_cpu_ms_per_1k_median": median(mode, "agent_cpu_ms_per_1k"),
            "shed_share_max": max(r[mode]["shed_share"] for r in rounds),
            "flood_cuts_total": sum(r[mode]["flood_cuts"] for r in rounds),
            "events_lost_total": sum(r[mode]["events_lost"] for r in rounds),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--rate", type=float, default=5000, help="requests/s")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections")
    parser.add_argument("--fixed-duration", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds after /ready before load")
    parser.add_argument("--output", default=str(ho.ROOT / "bench" / "results" / "fixed_rate_tail.json"))
    args = parser.parse_args()
    args.fixed_tool = "loadgen"  # latencies to the ns: hey's 0.1 ms steps hide what this measures
    if os.geteuid() != 0:
        print("needs root (BPF)", file=sys.stderr)
        return 2
    rounds: list[dict] = []
    started = time.time()
    with ho.nginx_and_sink("telegen-tail-") as (workdir, nginx, sink):
        for rnd in range(args.rounds):
            order = MODES[rnd % len(MODES):] + MODES[:rnd % len(MODES)]
            row: dict = {"round": rnd + 1, "order": order}
            for i, mode in enumerate(order):
                row[mode] = run_mode(mode, nginx, sink, workdir, rnd * 10 + i, args)
                time.sleep(0.5)
            rounds.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    ho.write_result("fixed_rate_tail.py", args.output, started, summarize(rounds), rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
