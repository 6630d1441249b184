"""Collector outage benchmark: N spans/s into ExportStage while nothing listens; RSS must stay bounded.

    .venv/bin/python bench/export_outage.py --duration 180 --rate 1000

Prints one JSON line per sample ({"t": s, "rss_mb": ...}) and a JSON summary at the end:
RSS at start / peak / end, the queue numbers, and (with --recover) how long the receiver
takes to get the queued spans once it comes back. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telegen.export.exporter import ExportStage
from telegen.export.sender import RetryPolicy
from tests.otlp_receiver import OtlpReceiver
from tests.unit.export.factories import make_config, make_spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="outage length in seconds")
    parser.add_argument("--rate", type=int, default=1000, help="spans per second offered")
    parser.add_argument("--queue-size", type=int, default=10000)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--recover", action="store_true", help="start the receiver after the outage")
    args = parser.parse_args()

    receiver = OtlpReceiver().start()
    endpoint = receiver.endpoint
    receiver.stop()  # the outage: connection refused
    config = make_config(endpoint, queue_size=args.queue_size, batch_size=512, interval=1.0, timeout=5)
    # The default policy except a max elapsed time longer than the outage, so nothing gives up.
    stage = ExportStage(config, [], retry=RetryPolicy(max_elapsed=args.duration + 600))
    stage.start()
    proc = psutil.Process(os.getpid())
    tick = 0.1
    per_tick = max(1, int(args.rate * tick))
    start = time.monotonic()
    next_sample = start
    samples = []
    rss_start = proc.memory_info().rss
    while (now := time.monotonic()) - start < args.duration:
        stage.submit_spans(make_spans(per_tick))  # fresh objects: queued spans cost what real ones do
        if now >= next_sample:
            c = stage.queue_counts()["traces"]
            sample = {"t": round(now - start, 1), "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                      "queued": c["size"], "in_flight": c["in_flight"], "dropped": c["dropped"]}
            samples.append(sample)
            print(json.dumps(sample), flush=True)
            next_sample += args.sample_every
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    recovery = None
    if args.recover:
        queued = stage.queue_counts()["traces"]
        waiting = queued["size"] + queued["in_flight"]
        receiver.start()
        t0 = time.monotonic()
        receiver.wait_for_spans(waiting, timeout=120)
        recovery = {"spans_delivered": len(receiver.spans), "waiting_at_recovery": waiting,
                    "seconds": round(time.monotonic() - t0, 2)}
    counts = stage.queue_counts()["traces"]
    peak = max(s["rss_mb"] for s in samples) if samples else 0
    summary = {
        "duration_s": args.duration, "rate": args.rate, "queue_size": args.queue_size,
        "rss_start_mb": round(rss_start / 2**20, 1), "rss_peak_mb": peak,
        "rss_end_mb": round(proc.memory_info().rss / 2**20, 1),
        "rss_growth_last_half_mb": round(samples[-1]["rss_mb"] - samples[len(samples) // 2]["rss_mb"], 1)
        if len(samples) > 1 else 0.0,
        "produced": counts["produced"], "queued": counts["size"], "in_flight": counts["in_flight"],
        "exported": counts["exported"],
        "dropped_by_reason": {k: v for k, v in counts["dropped_by_reason"].items() if v},
        "law_holds": counts["produced"] == counts["size"] + counts["in_flight"] + counts["exported"]
        + counts["dropped"],
        "recovery": recovery,
    }
    stage.stop(5)
    receiver.stop()
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
