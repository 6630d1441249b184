"""Probe tables and the attach-method choice: kprobe where the kernel has it; else, for data
syscalls, the socket layer's two length tracepoints dispatching on the syscall id (6.3+), and
for accept, connect and close the socket's state changes (sock:inet_sock_set_state); else the
two raw_syscalls tracepoints dispatching on the id; else a syscall's own tracepoints.

Probes are data. The loader asks `choose()` for a plan, compiles the BPF source with one
-D switch per chosen probe, and attaches exactly what the plan says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

AttachType = Literal["kprobe", "sock_tracepoint", "raw_tracepoint", "tracepoint"]

# Shared by every syscall probe that takes the raw method: one program each, switching on the id.
RAW_SYSCALL_TRACEPOINTS = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit")
RAW_REASON = "raw_syscalls:sys_enter/sys_exit with syscall-id dispatch"
# Shared by the data syscalls that take the sock method: the socket layer's exits, which run for
# socket I/O only, switching on the id of the syscall the task is in (from its saved registers).
SOCK_RECV, SOCK_SEND = "sock:sock_recv_length", "sock:sock_send_length"
SOCK_IO_TRACEPOINTS = (SOCK_RECV, SOCK_SEND)
SOCK_REASON = "sock:sock_recv_length/sock_send_length (socket I/O only) with syscall-id dispatch"
# What accept, connect and close tell the capture (a socket's role, its end) also shows as TCP
# state changes, which run for TCP sockets only. Any syscalls:* tracepoint, however rarely it
# fires, sends every syscall of every process on the node through the kernel's slow syscall
# path (bench/tracepoint_cost.py: +8 ns per getppid() on this project's CI kind of host, +44-70
# on an earlier VM).
SOCK_STATE = "sock:inet_sock_set_state"
SOCK_STATE_REASON = ("sock:inet_sock_set_state: role when the handshake completes, end when the socket "
                     "closes (no syscalls:* tracepoint, which would slow every syscall on the node)")
OWN_TP_REASON = "its own syscalls:* tracepoints, which run for this syscall only (no raw_syscalls pair needed)"


class LoadError(Exception):
    """The BPF programs cannot be chosen, compiled, loaded or attached."""


@dataclass(frozen=True)
class ProbeSpec:
    feature: str  # "http" or "tcp"
    name: str  # syscall or kernel event this probe covers, e.g. "read"
    tracepoint: tuple[str, ...]  # "category:event" names (enter, exit)
    kprobe_symbol: str  # traced kernel function ("" when there is no kprobe variant)
    kretprobe: bool  # also attach a kretprobe on the same symbol
    required: bool = True
    syscall_nr: int | None = None  # x86_64 syscall id: the raw_syscalls dispatch handles it
    sock_event: str = ""  # SOCK_RECV/SOCK_SEND: a data syscall the sock dispatch handles; SOCK_STATE:
    # a socket's start or end, which TCP state changes show

    @property
    def data(self) -> bool:
        """A syscall that moves a socket's bytes (the length pair dispatches it)."""
        return self.sock_event in SOCK_IO_TRACEPOINTS


@dataclass(frozen=True)
class KernelFeatures:
    release: str
    kprobes: bool
    btf: bool
    tracefs: Path | None
    traceable: frozenset[str] = field(default_factory=frozenset)

    def symbol_traceable(self, symbol: str) -> bool:
        return not self.traceable or symbol in self.traceable


@dataclass(frozen=True)
class ProbeChoice:
    spec: ProbeSpec
    method: AttachType | None  # None: cannot attach
    reason: str


def _syscall(name: str, nr: int, exit_probe: bool = True, required: bool = True, sock_event: str = "") -> ProbeSpec:
    tps = (f"syscalls:sys_enter_{name}",) + ((f"syscalls:sys_exit_{name}",) if exit_probe else ())
    return ProbeSpec("http", name, tps, f"__x64_sys_{name}", exit_probe, required, nr, sock_event)


# The ids are x86_64's (asm/unistd_64.h), the only architecture the agent builds for; the BPF
# side switches on the same ids through __NR_* (tests/unit/capture checks both agree).
HTTP_PROBES: tuple[ProbeSpec, ...] = (
    _syscall("read", 0, sock_event=SOCK_RECV), _syscall("write", 1, sock_event=SOCK_SEND),
    _syscall("readv", 19, sock_event=SOCK_RECV), _syscall("writev", 20, sock_event=SOCK_SEND),
    _syscall("recvfrom", 45, sock_event=SOCK_RECV), _syscall("sendto", 44, sock_event=SOCK_SEND),
    _syscall("recvmsg", 47, sock_event=SOCK_RECV), _syscall("sendmsg", 46, sock_event=SOCK_SEND),
    _syscall("sendfile64", 40, required=False, sock_event=SOCK_SEND),
    _syscall("accept4", 288, sock_event=SOCK_STATE), _syscall("accept", 43, required=False, sock_event=SOCK_STATE),
    _syscall("connect", 42, sock_event=SOCK_STATE), _syscall("close", 3, exit_probe=False, sock_event=SOCK_STATE),
)


# TCP lifecycle. The kernel events are stable tracepoints with the socket and its addresses
# as arguments; a kprobe on tcp_set_state would need struct walks for the same data, so these
# specs have no kprobe variant (kprobe_symbol ""). accept/accept4 exits attribute the server
# side of a connection to the process that accepted it; by default (sock_tracepoint) the
# process that closes it does, from inet_sock_set_state, so no syscalls:* tracepoint is needed.
TCP_PROBES: tuple[ProbeSpec, ...] = (
    ProbeSpec("tcp", "inet_sock_set_state", ("sock:inet_sock_set_state",), "", False, True),
    ProbeSpec("tcp", "tcp_destroy_sock", ("tcp:tcp_destroy_sock",), "", False, True),
    ProbeSpec("tcp", "tcp_retransmit_skb", ("tcp:tcp_retransmit_skb",), "", False, False),
    ProbeSpec("tcp", "tcp_send_reset", ("tcp:tcp_send_reset",), "", False, False),
    ProbeSpec("tcp", "tcp_receive_reset", ("tcp:tcp_receive_reset",), "", False, False),
    ProbeSpec("tcp", "accept4", ("syscalls:sys_exit_accept4",), "", False, False, sock_event=SOCK_STATE),
    ProbeSpec("tcp", "accept", ("syscalls:sys_exit_accept",), "", False, False, sock_event=SOCK_STATE),
)


def find_tracefs() -> Path | None:
    for candidate in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (candidate / "events").is_dir():
            return candidate
    return None


def detect_kernel(tracefs: Path | None = None, btf_path: Path = Path("/sys/kernel/btf/vmlinux"),
                  load_symbols: bool = True) -> KernelFeatures:
    """What this kernel offers: kprobes (kprobe_events present), tracefs, BTF, traceable symbols."""
    tracefs = tracefs or find_tracefs()
    kprobes = bool(tracefs and (tracefs / "kprobe_events").exists())
    traceable: frozenset[str] = frozenset()
    if kprobes and load_symbols and tracefs:
        try:
            with open(tracefs / "available_filter_functions", encoding="ascii", errors="replace") as fh:
                traceable = frozenset(line.split(" ", 1)[0].strip() for line in fh if "sys_" in line)
        except OSError:
            traceable = frozenset()
    return KernelFeatures(os.uname().release, kprobes, btf_path.exists(), tracefs, traceable)


def tracepoint_exists(tracefs: Path | None, tp: str) -> bool:
    if tracefs is None:
        return False
    category, _, event = tp.partition(":")
    return (tracefs / "events" / category / event).is_dir()


def _forced(spec: ProbeSpec, force: AttachType, ok: dict[AttachType, bool]) -> tuple[AttachType | None, str]:
    if ok[force]:
        return force, f"{force} forced by configuration"
    if force == "sock_tracepoint" and spec.syscall_nr is not None and not spec.data and ok["tracepoint"]:
        return "tracepoint", f"sock_tracepoint forced by configuration; {OWN_TP_REASON}"
    what = {"kprobe": f"kprobe symbol {spec.kprobe_symbol or '(none)'} not traceable",
            "sock_tracepoint": ("no sock-tracepoint variant" if not spec.sock_event
                                else "sock length tracepoints missing (kernel 6.3+) or no BTF" if spec.data
                                else f"{SOCK_STATE} missing, or the data syscalls are not on the sock pair"),
            "raw_tracepoint": ("raw_syscalls tracepoints missing" if spec.syscall_nr is not None
                               else "no raw-tracepoint variant"),
            "tracepoint": "tracepoint missing"}[force]
    return None, f"{force} forced by configuration but {what}"


def choose(specs: tuple[ProbeSpec, ...], kernel: KernelFeatures,
           force: AttachType | None = None) -> list[ProbeChoice]:
    """Pick an attach method per probe: kprobe where possible; else, for a data syscall, the
    sock length tracepoints (they run for socket I/O only); else, for a syscall, the raw
    syscall tracepoints (one enter/exit program pair for all, cheaper per syscall and far
    quicker to verify than 25 syscalls:* programs); else its own tracepoint. A syscall
    without data (accept, connect, close) takes the socket's state changes when the data
    syscalls are on the sock pair, else its own tracepoints rather than the raw pair when no
    data syscall needs that pair: the pair would run for every syscall again."""
    raw_tps = all(tracepoint_exists(kernel.tracefs, tp) for tp in RAW_SYSCALL_TRACEPOINTS)
    sock_tps = kernel.btf and all(tracepoint_exists(kernel.tracefs, tp) for tp in SOCK_IO_TRACEPOINTS)

    def kp_ok(spec: ProbeSpec) -> bool:
        return bool(spec.kprobe_symbol) and kernel.kprobes and kernel.symbol_traceable(spec.kprobe_symbol)

    data = [s for s in specs if s.data]
    raw_needed = any(not kp_ok(s) and not sock_tps for s in data)
    # State changes stand in for accept/connect/close only beside the sock pair, whose events
    # carry the socket: a reused fd number is then told apart by its socket (no close needed).
    data_on_sock = sock_tps and (force == "sock_tracepoint" or (force is None and not any(kp_ok(s) for s in data)))
    state_tp = tracepoint_exists(kernel.tracefs, SOCK_STATE) and (not data or data_on_sock)
    out = []
    for spec in specs:
        ok: dict[AttachType, bool] = {
            "kprobe": kp_ok(spec),
            "sock_tracepoint": sock_tps if spec.data else spec.sock_event == SOCK_STATE and state_tp,
            "raw_tracepoint": spec.syscall_nr is not None and raw_tps,
            "tracepoint": all(tracepoint_exists(kernel.tracefs, tp) for tp in spec.tracepoint)}
        why = ("kprobes not available in this kernel" if not kernel.kprobes
               else f"{spec.kprobe_symbol} is not traceable" if spec.kprobe_symbol else "no kprobe variant")
        method: AttachType | None
        if force is not None:
            method, reason = _forced(spec, force, ok)
        elif ok["kprobe"]:
            method, reason = "kprobe", f"kprobes available and {spec.kprobe_symbol} is traceable"
        elif ok["sock_tracepoint"]:
            method, reason = "sock_tracepoint", f"{why}; {SOCK_REASON if spec.data else SOCK_STATE_REASON}"
        elif ok["tracepoint"] and spec.syscall_nr is not None and not spec.data and not raw_needed:
            method, reason = "tracepoint", f"{why}; {OWN_TP_REASON}"
        elif ok["raw_tracepoint"]:
            method, reason = "raw_tracepoint", f"{why}; {RAW_REASON}"
        elif ok["tracepoint"]:
            method, reason = "tracepoint", why
        else:
            method, reason = None, "neither a traceable kprobe symbol nor the tracepoint exists"
        out.append(ProbeChoice(spec, method, reason))
    return out


def cflags_for(choices: list[ProbeChoice]) -> list[str]:
    """One -DTP_<name>, -DKP_<name>, -DSK_<name> or -DRAW_<name> per probe the plan attaches,
    -DSOCK_IO when a data syscall goes through the sock dispatch, -DSOCK_STATE when a socket's
    start or end comes from its state changes, -DRAW_SYSCALLS when any goes through the raw one."""
    prefix = {"tracepoint": "TP", "kprobe": "KP", "sock_tracepoint": "SK", "raw_tracepoint": "RAW"}
    flags = [f"-D{prefix[c.method]}_{c.spec.name}" for c in choices if c.method is not None]
    if any(c.method == "sock_tracepoint" and c.spec.data for c in choices):
        flags.append("-DSOCK_IO")
    if any(c.method == "sock_tracepoint" and not c.spec.data for c in choices):
        flags.append("-DSOCK_STATE")
    if any(c.method == "raw_tracepoint" for c in choices):
        flags.append("-DRAW_SYSCALLS")
    return flags


def plan(specs: tuple[ProbeSpec, ...], kernel: KernelFeatures, what: str,
         force: AttachType | None = None) -> list[ProbeChoice]:
    """The attach plan for a feature; LoadError when tracefs or a required probe is missing."""
    if kernel.tracefs is None:
        raise LoadError("tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)")
    choices = choose(specs, kernel, force=force)
    missing = [c for c in choices if c.method is None and c.spec.required]
    if missing:
        raise LoadError(f"required {what} probes unavailable: "
                        + ", ".join(f"{c.spec.name} ({c.reason})" for c in missing))
    return choices
