"""Ring-buffer read cost: BCC's per-record callback vs telegen's mapped batch reader, µs per record.

    .venv/bin/python bench/ringbuf_read_cost.py                    # about 20 s
    .venv/bin/python bench/ringbuf_read_cost.py --record-size 120  # TCP records

A tiny program on sys_enter_write emits --burst records of --record-size bytes (624: an HTTP
exchange with 256 capture bytes) per write() to /dev/null by the target process.

1. batch: this process fills the ring with --records records, then one read() empties it and
   BoundedQueue.put_many takes the batch (together what the agent's reader thread does per
   wake-up). Methods alternate round by round on the same map; CPU time of this thread.
2. live: a child process writes at --live-rate records/s while a RingbufReader drains every
   50 ms for --live-seconds; reader-thread CPU per record delivered (read + queue + wake-ups),
   and of that the read alone. The records were written by another CPU: cache misses count.

Prints JSON and writes bench/results/ringbuf_read_cost-<record size>.json. Needs root (BPF), x86-64.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from telegen.capture.reader import RingbufReader  # noqa: E402
from telegen.capture.ringbuf import CallbackRingbuf, MappedRingbuf, RecordSource  # noqa: E402
from telegen.pipeline import BoundedQueue  # noqa: E402

PROGRAM = r"""
BPF_RINGBUF_OUTPUT(bench_events, RING_PAGES);
BPF_ARRAY(target, u32, 1);
BPF_ARRAY(failed, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_write) {
    int zero = 0;
    u32 *tgid = target.lookup(&zero);
    if (!tgid || *tgid != (u32)(bpf_get_current_pid_tgid() >> 32))
        return 0;
    for (u32 i = 0; i < BURST; i++) {
        u64 *p = bench_events.ringbuf_reserve(REC_SIZE);
        if (!p) {
            u64 *f = failed.lookup(&zero);
            if (f) __sync_fetch_and_add(f, 1);
            continue;
        }
        p[0] = bpf_ktime_get_ns();
        p[1] = i;
        bench_events.ringbuf_submit(p, BPF_RB_NO_WAKEUP);
    }
    return 0;
}
"""

# Paced, and never catching up after being descheduled (a catch-up burst fills the ring whatever
# reads it). Unpaced, it outruns both readers, and BCC's consume then never returns (libbpf loops
# while new data keeps arriving), which would hang the callback half of the comparison.
WRITER = """
import os, sys, time
fd, per_ms = os.open('/dev/null', os.O_WRONLY), int(sys.argv[1])
sys.stdin.readline()
t = time.monotonic()
while True:
    for _ in range(per_ms):
        os.write(fd, b'x')
    t = max(t + 0.001, time.monotonic() - 0.001)
    time.sleep(max(0.0, t - time.monotonic()))
"""


class Bench:
    def __init__(self, pages: int, burst: int, record_size: int, methods: list[str]) -> None:
        from bcc import BPF

        self.bpf: Any = BPF(text=PROGRAM.encode(),
                            cflags=[f"-DRING_PAGES={pages}", f"-DBURST={burst}", f"-DREC_SIZE={record_size}"])
        table = self.bpf[b"bench_events"]
        self.size = int(table.max_entries)
        make = {"callback": lambda: CallbackRingbuf(self.bpf, "bench_events"),  # shares the consumer position
                "mmap": lambda: MappedRingbuf(int(table.map_fd), self.size)}
        self.sources: dict[str, RecordSource] = {name: make[name]() for name in methods}
        self.burst = burst

    def target(self, pid: int) -> None:
        table = self.bpf[b"target"]
        table[ctypes.c_int(0)] = ctypes.c_uint32(pid)

    def failed(self) -> int:
        table = self.bpf[b"failed"]
        return int(table[ctypes.c_int(0)].value)

    def fill(self, records: int) -> None:
        fd = os.open("/dev/null", os.O_WRONLY)
        try:
            for _ in range(records // self.burst):
                os.write(fd, b"x")
        finally:
            os.close(fd)

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.bpf.cleanup()


def batch(bench: Bench, records: int, rounds: int) -> dict[str, Any]:
    bench.target(os.getpid())
    read_us: dict[str, list[float]] = {name: [] for name in bench.sources}
    queue_us: dict[str, list[float]] = {name: [] for name in bench.sources}
    failed_before = bench.failed()
    for _ in range(rounds):
        for name, source in bench.sources.items():
            bench.fill(records)
            queue: BoundedQueue[bytes] = BoundedQueue("bench", records * 2)
            t0 = time.thread_time_ns()
            got = source.read()
            t1 = time.thread_time_ns()
            queue.put_many(got)
            t2 = time.thread_time_ns()
            assert len(got) == records, f"{name}: read {len(got)} of {records}"
            read_us[name].append((t1 - t0) / records / 1000)
            queue_us[name].append((t2 - t1) / records / 1000)
    bench.target(0)
    return {
        "records_per_drain": records, "rounds": rounds,
        "read_us_per_record": {k: round(statistics.median(v), 3) for k, v in read_us.items()},
        "put_many_us_per_record": {k: round(statistics.median(v), 3) for k, v in queue_us.items()},
        "read_us_per_record_all": {k: [round(x, 3) for x in v] for k, v in read_us.items()},
        "reserve_failed": bench.failed() - failed_before,
    }


class TimedRead:
    """source.read, with the CPU time spent inside it (the rest of a drain is the queue)."""

    def __init__(self, source: RecordSource) -> None:
        self.source = source
        self.ns = 0

    def __call__(self) -> list[bytes]:
        t0 = time.thread_time_ns()
        try:
            return self.source.read()
        finally:
            self.ns += time.thread_time_ns() - t0


def drain_for(reader: RingbufReader, queue: BoundedQueue[bytes], seconds: float) -> int:
    """The agent's reader loop for `seconds`; returns this thread's CPU ns, the worker's share
    (taking the batches out of the queue) not counted."""
    t0 = time.thread_time_ns()
    taking = 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        time.sleep(0.05)
        reader.drain()
        t1 = time.thread_time_ns()
        queue.get_batch(10_000_000)  # keeps memory flat
        taking += time.thread_time_ns() - t1
    return time.thread_time_ns() - t0 - taking


def live(bench: Bench, seconds: float, rate: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    writes_per_ms = str(max(1, rate // bench.burst // 1000))
    for name, source in bench.sources.items():
        child = subprocess.Popen([sys.executable, "-c", WRITER, writes_per_ms], stdin=subprocess.PIPE, text=True)
        queue: BoundedQueue[bytes] = BoundedQueue("bench", 10_000_000)
        read = TimedRead(source)
        reader = RingbufReader(read, queue)
        cpu: list[int] = []
        try:
            bench.target(child.pid)
            failed_before = bench.failed()
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            cpu.append(drain_for(reader, queue, seconds))
        finally:
            bench.target(0)
            child.kill()
            child.wait()
        source.read()  # leave the ring empty for the next method
        out[name] = {"records": reader.received, "records_per_s": round(reader.received / seconds),
                     "reader_cpu_share": round(cpu[0] / 1e9 / seconds, 3),
                     "us_per_record": round(cpu[0] / reader.received / 1000, 3),
                     "of_which_read_us": round(read.ns / reader.received / 1000, 3),
                     "reserve_failed": bench.failed() - failed_before}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record-size", type=int, default=624)
    ap.add_argument("--methods", default="callback,mmap", help="readers to compare, in this order")
    ap.add_argument("--records", type=int, default=20000, help="records per drain in the batch regime")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--burst", type=int, default=8, help="records per write() syscall")
    ap.add_argument("--pages", type=int, default=4096, help="ring size in 4 KiB pages")
    ap.add_argument("--live-seconds", type=float, default=5.0)
    ap.add_argument("--live-rate", type=int, default=100_000, help="records/s in the live regime")
    args = ap.parse_args()
    if (args.record_size + 15) // 8 * 8 * args.records > args.pages * 4096:
        ap.error("--records of --record-size do not fit in --pages")
    if args.records % args.burst:
        ap.error("--records must be a multiple of --burst")
    bench = Bench(args.pages, args.burst, args.record_size, args.methods.split(","))
    try:
        result = {
            "machine": platform.machine(), "record_size": args.record_size, "ring_bytes": bench.size,
            "burst": args.burst,
            "batch": batch(bench, args.records, args.rounds),
            "live": live(bench, args.live_seconds, args.live_rate) if args.live_seconds > 0 else None,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "kernel": platform.release(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
        }
    finally:
        bench.close()
    text = json.dumps(result, indent=2)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"ringbuf_read_cost-{args.record_size}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
