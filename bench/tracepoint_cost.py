"""What attaching a BPF program costs the traced code, before the program does any work.

    .venv/bin/python bench/tracepoint_cost.py            # about 1 minute, needs root (BPF)

Two questions behind bpf/http.bpf.c's attach points (docs/capture.md):

1. sock:sock_recv_length/sock_send_length as a tracepoint program (the kernel first builds a
   perf record of the event) or as a raw tracepoint program (the arguments as they are): a
   send and a receive of one byte on a socketpair, with a program that only tests its input.
2. A syscalls:* tracepoint that never fires (sys_enter_close here, and getppid() is never
   closed): does enabling it slow every other syscall? getppid() in a loop.

Each case is measured in interleaved rounds (best of 7 loops per round, median over rounds),
so the host's drift falls on all cases alike. Prints JSON.
"""

from __future__ import annotations

import ctypes
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable

PROGRAMS = {
    "none": "",
    "sock_tracepoint": """
TRACEPOINT_PROBE(sock, sock_send_length) { return args->ret == 12345; }
TRACEPOINT_PROBE(sock, sock_recv_length) { return args->ret == 12345; }
""",
    "sock_raw_tracepoint": """
RAW_TRACEPOINT_PROBE(sock_send_length) { return (int)ctx->args[1] == 12345; }
RAW_TRACEPOINT_PROBE(sock_recv_length) { return (int)ctx->args[1] == 12345; }
""",
    "syscalls_close_tracepoint": """
TRACEPOINT_PROBE(syscalls, sys_enter_close) { return args->fd == 12345; }
""",
}


def best_ns(op: Callable[[], object], n: int = 100_000, loops: int = 7) -> float:
    best = float("inf")
    for _ in range(loops):
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e9


def main() -> int:
    from bcc import BPF

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    a, b = socket.socketpair()
    libc = ctypes.CDLL(None, use_errno=True)

    def send_recv() -> None:
        a.send(b"x")
        b.recv(1)

    results: dict[str, dict[str, list[float]]] = {name: {"send_recv_ns": [], "getppid_ns": []} for name in PROGRAMS}
    for _ in range(rounds):
        for name, text in PROGRAMS.items():
            bpf = BPF(text=text) if text else None
            try:
                results[name]["send_recv_ns"].append(best_ns(send_recv))
                results[name]["getppid_ns"].append(best_ns(libc.getppid))
            finally:
                if bpf is not None:
                    bpf.cleanup()
    base = {k: statistics.median(v) for k, v in results["none"].items()}
    summary = {name: {k: {"median": round(statistics.median(v), 1),
                          "added": round(statistics.median(v) - base[k], 1)} for k, v in r.items()}
               for name, r in results.items()}
    print(json.dumps({"rounds": rounds, "summary": summary,
                      "raw": {n: {k: [round(x, 1) for x in v] for k, v in r.items()} for n, r in results.items()}},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
