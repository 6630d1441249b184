"""How the kernel schedules the agent's threads against the workloads'.

`background` (the default) puts every thread under SCHED_BATCH with a 10 ms EEVDF slice:
- SCHED_BATCH: an agent thread waking (the ring-buffer read every 50 ms, the processing burst
  after it, the export timers) does not preempt the workload thread running on its CPU; it
  runs when the CPU is free or at the next tick, with its fair share of CPU all the same.
- the long slice: a workload thread waking on a CPU where the agent runs has the shorter
  slice (the kernel's default, 0.7 ms x (1 + log2 CPUs)), so EEVDF lets it preempt the agent
  at once rather than after the agent's protected share of a slice (kernel 6.12+; older
  kernels ignore it).

On nginx at 5,000 req/s, measured with bench/loadgen.c to the microsecond, that took p99 from
194 µs (SCHED_OTHER) to 30 µs, against 25 µs without an agent (bench/cpu_scheduling.py);
SCHED_BATCH alone left 181 µs. `normal` leaves SCHED_OTHER and the default slice. No privilege
is needed for either.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import platform
import struct
from pathlib import Path

log = logging.getLogger(__name__)

BACKGROUND_SLICE_NS = 10_000_000
# name -> (policy, EEVDF slice in ns; 0: the kernel's default)
MODES: dict[str, tuple[int, int]] = {"background": (os.SCHED_BATCH, BACKGROUND_SLICE_NS), "normal": (os.SCHED_OTHER, 0)}
_NAMES = {os.SCHED_OTHER: "normal", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle",
          os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
_TASKS = Path("/proc/self/task")
# sched_setattr(2)/sched_getattr(2) have no wrapper in Python or glibc; () elsewhere
_SYSCALL_NUMBERS: tuple[int, ...] = {"x86_64": (314, 315), "aarch64": (274, 275)}.get(platform.machine(), ())
# struct sched_attr, SCHED_ATTR_SIZE_VER0: size, policy, flags, nice, priority, runtime, deadline, period
_ATTR = struct.Struct("=IIQiIQQQ")
_libc = ctypes.CDLL(None, use_errno=True)


def apply(mode: str) -> int:
    """Put every thread of this process under `mode`; threads started later inherit it.

    Returns how many threads were set. Raises OSError when the kernel refuses (a seccomp
    filter, say); the caller decides whether that is fatal.
    """
    policy, slice_ns = MODES[mode]
    count = 0
    for tid in _thread_ids():
        try:
            _set(tid, policy, slice_ns)
        except ProcessLookupError:  # the thread ended since the listing
            continue
        count += 1
    return count


def apply_logged(mode: str) -> None:
    """apply(), with a refusal logged rather than raised: the agent works under any policy."""
    try:
        count = apply(mode)
    except OSError as exc:
        log.warning("cannot put the agent's threads under the %s CPU scheduling mode: %s", mode, exc)
    else:
        log.info("CPU scheduling %s on %d threads", mode, count)


def report() -> dict[str, dict[str, int]]:
    """How many of this process's threads run under each policy (`threads`) and with each
    EEVDF slice in ms (`slices_ms`; "0" before kernel 6.12, which has no per-thread slice, and
    empty where sched_getattr is not wired up), as the kernel reports them now."""
    policies: collections.Counter[str] = collections.Counter()
    slices: collections.Counter[str] = collections.Counter()
    for tid in _thread_ids():
        try:
            policy = os.sched_getscheduler(tid)
            runtime_ns = _get_runtime_ns(tid) if _SYSCALL_NUMBERS else None
        except OSError:  # the thread ended since the listing
            continue
        policies[_NAMES.get(policy, str(policy))] += 1
        if runtime_ns is not None:
            slices[f"{runtime_ns / 1e6:g}"] += 1
    return {"threads": dict(policies), "slices_ms": dict(slices)}


def _set(tid: int, policy: int, slice_ns: int) -> None:
    if not _SYSCALL_NUMBERS:  # no slice here: the policy alone
        os.sched_setscheduler(tid, policy, os.sched_param(0))
        return
    nice = os.getpriority(os.PRIO_PROCESS, tid)  # sched_setattr sets nice too: keep the thread's
    attr = ctypes.create_string_buffer(_ATTR.pack(_ATTR.size, policy, 0, nice, 0, slice_ns, 0, 0), _ATTR.size)
    _syscall(_SYSCALL_NUMBERS[0], tid, attr, 0)


def _get_runtime_ns(tid: int) -> int:
    attr = ctypes.create_string_buffer(_ATTR.size)
    _syscall(_SYSCALL_NUMBERS[1], tid, attr, _ATTR.size, 0)
    runtime_ns: int = _ATTR.unpack(attr.raw)[5]
    return runtime_ns


def _syscall(number: int, *args: object) -> None:
    if _libc.syscall(number, *args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))  # ESRCH comes out as ProcessLookupError


def _thread_ids() -> list[int]:
    return [int(name) for name in os.listdir(_TASKS) if name.isdigit()]
