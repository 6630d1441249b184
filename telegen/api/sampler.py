"""CPU sampling of the agent's Python threads: stacks from sys._current_frames(), weighted by CPU.

Each tick reads every thread's CPU clock (pthread_getcpuclockid); a thread whose clock moved
since the last tick was on CPU, and the CPU time it used is charged to the stack it shows now.
Threads blocked in C (ring-buffer poll, sockets, sleeps) therefore cost nothing, as in Go's
CPU profile, instead of a wall-clock profile that would be dominated by waiting.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from telegen.api.pprof import Frame

MAX_DEPTH = 128


@dataclass
class CpuSamples:
    hz: int
    started_ns: int = 0
    duration_ns: int = 0
    # (thread name, leaf-first stack) -> [samples, cpu nanoseconds]
    stacks: dict[tuple[str, tuple[Frame, ...]], list[int]] = field(default_factory=dict)


def stack_of(frame: FrameType | None) -> tuple[Frame, ...]:
    out: list[Frame] = []
    while frame is not None and len(out) < MAX_DEPTH:
        code = frame.f_code
        out.append((code.co_qualname, code.co_filename, code.co_firstlineno, frame.f_lineno or 0))
        frame = frame.f_back
    return tuple(out)


def _thread_cpu_ns(ident: int) -> int | None:
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(ident))
    except (OSError, OverflowError, AttributeError):
        return None  # the thread ended between listing and reading


def sample_cpu(seconds: float, stop: threading.Event, hz: int = 100) -> CpuSamples:
    """Sample every other thread for `seconds` (or until stop is set)."""
    me = threading.get_ident()
    result = CpuSamples(hz=hz, started_ns=time.time_ns())
    last: dict[int, int] = {}
    interval = 1.0 / hz
    begin = time.monotonic()
    deadline = begin + seconds
    next_tick = begin
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            break
        names = {t.ident: t.name for t in threading.enumerate() if t.ident is not None}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            cpu = _thread_cpu_ns(ident)
            if cpu is None:
                continue
            previous = last.get(ident)
            last[ident] = cpu
            if previous is None or cpu <= previous:
                continue
            key = (names.get(ident, f"thread-{ident}"), stack_of(frame))
            counts = result.stacks.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += cpu - previous
        next_tick += interval
        stop.wait(max(0.0, next_tick - time.monotonic()))
    result.duration_ns = int((time.monotonic() - begin) * 1e9)
    return result


def collapsed(samples: CpuSamples) -> str:
    """Folded stacks ('thread;root;...;leaf count'), the input of flamegraph.pl and speedscope."""
    folded: dict[str, int] = {}
    for (thread, stack), (count, _cpu) in samples.stacks.items():
        frames = [f"{name} ({filename.rsplit('/', 1)[-1]}:{line})"
                  for name, filename, _s, line in reversed(stack)]
        key = ";".join([thread.replace(";", "_"), *(f.replace(";", "_") for f in frames)])
        folded[key] = folded.get(key, 0) + count
    return "".join(f"{key} {count}\n" for key, count in sorted(folded.items()))
