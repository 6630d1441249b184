"""telegen.capture.probes: attach-method choice per probe: kprobe first, then the sock length
tracepoints for data syscalls, then the raw_syscalls dispatch for syscalls, then per-event
tracepoints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telegen.capture.probes import (
    HTTP_PROBES,
    OWN_TP_REASON,
    RAW_REASON,
    SOCK_IO_TRACEPOINTS,
    SOCK_REASON,
    SOCK_STATE,
    SOCK_STATE_REASON,
    TCP_PROBES,
    KernelFeatures,
    LoadError,
    ProbeSpec,
    cflags_for,
    choose,
    detect_kernel,
    plan,
    tracepoint_exists,
)
from tests.conftest import require

READ = next(p for p in HTTP_PROBES if p.name == "read")
CLOSE = next(p for p in HTTP_PROBES if p.name == "close")


def _tracefs(root: Path, specs: tuple[ProbeSpec, ...] = HTTP_PROBES, kprobes: bool = False,
             raw: bool = True, sock: bool = False) -> Path:
    if raw:
        for event in ("sys_enter", "sys_exit"):
            (root / "events" / "raw_syscalls" / event).mkdir(parents=True, exist_ok=True)
    if sock:  # kernel 6.3+ (inet_sock_set_state: 4.16+)
        for tp in (*SOCK_IO_TRACEPOINTS, SOCK_STATE):
            (root / "events" / tp.replace(":", "/")).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        for tp in spec.tracepoint:
            category, _, event = tp.partition(":")
            (root / "events" / category / event).mkdir(parents=True, exist_ok=True)
    if kprobes:
        (root / "kprobe_events").write_text("")
    return root


def _kernel(tracefs: Path | None, kprobes: bool, traceable: frozenset[str] = frozenset(),
            btf: bool = True) -> KernelFeatures:
    return KernelFeatures("6.1.0-test", kprobes, btf, tracefs, traceable)


def test_probe_table_shape() -> None:
    names = {p.name for p in HTTP_PROBES}
    assert {"read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
            "accept4", "connect", "close"} <= names
    assert READ.tracepoint == ("syscalls:sys_enter_read", "syscalls:sys_exit_read")
    assert READ.kprobe_symbol == "__x64_sys_read" and READ.kretprobe
    assert CLOSE.tracepoint == ("syscalls:sys_enter_close",) and not CLOSE.kretprobe


def test_kprobes_available_and_traceable_choose_kprobe(tmp_path: Path) -> None:
    choices = choose(HTTP_PROBES, _kernel(_tracefs(tmp_path), kprobes=True))
    assert {c.method for c in choices} == {"kprobe"}
    read = next(c for c in choices if c.spec.name == "read")
    assert read.reason == "kprobes available and __x64_sys_read is traceable"


def test_no_kprobes_dispatches_syscalls_from_raw_tracepoints(tmp_path: Path) -> None:
    choices = choose(HTTP_PROBES, _kernel(_tracefs(tmp_path), kprobes=False))
    assert {c.method for c in choices} == {"raw_tracepoint"}
    assert {c.reason for c in choices} == {
        "kprobes not available in this kernel; raw_syscalls:sys_enter/sys_exit with syscall-id dispatch"}


def test_no_raw_syscalls_falls_back_to_tracepoint(tmp_path: Path) -> None:
    choices = choose(HTTP_PROBES, _kernel(_tracefs(tmp_path, raw=False), kprobes=False))
    assert {c.method for c in choices} == {"tracepoint"}
    assert {c.reason for c in choices} == {"kprobes not available in this kernel"}


def test_tcp_probes_have_no_raw_variant(tmp_path: Path) -> None:
    """TCP events are tracepoints; accept attribution rides on inet_sock_set_state (the closing
    process) unless forced onto syscalls:sys_exit_accept*, with or without kprobes."""
    for kprobes in (False, True):
        choices = {c.spec.name: c for c in choose(TCP_PROBES, _kernel(_tracefs(tmp_path, TCP_PROBES), kprobes))}
        assert {n: c.method for n, c in choices.items() if c.method != "tracepoint"} == {
            "accept4": "sock_tracepoint", "accept": "sock_tracepoint"}
        assert choices["accept4"].reason.endswith(SOCK_STATE_REASON)
    assert choices["accept4"].reason.startswith("no kprobe variant; ")
    forced_tp = choose(TCP_PROBES, _kernel(_tracefs(tmp_path, TCP_PROBES), False), force="tracepoint")
    assert {c.method for c in forced_tp} == {"tracepoint"}
    assert cflags_for(forced_tp)[-2:] == ["-DTP_accept4", "-DTP_accept"]
    forced = choose(TCP_PROBES[:1], _kernel(_tracefs(tmp_path, TCP_PROBES), kprobes=False), force="raw_tracepoint")
    assert forced[0].method is None and "no raw-tracepoint variant" in forced[0].reason


def test_untraceable_symbol_falls_back_per_probe(tmp_path: Path) -> None:
    traceable = frozenset({"__x64_sys_write"})
    choices = {c.spec.name: c for c in choose(HTTP_PROBES, _kernel(_tracefs(tmp_path), True, traceable))}
    assert choices["write"].method == "kprobe"
    assert choices["read"].method == "raw_tracepoint"
    assert choices["read"].reason == f"__x64_sys_read is not traceable; {RAW_REASON}"


def test_neither_gives_none(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    choices = choose((READ,), _kernel(tmp_path, kprobes=False))
    assert choices[0].method is None
    assert "neither" in choices[0].reason
    assert choose((READ,), _kernel(None, kprobes=False))[0].method is None


def test_missing_exit_tracepoint_means_no_tracepoint(tmp_path: Path) -> None:
    (tmp_path / "events" / "syscalls" / "sys_enter_read").mkdir(parents=True)
    assert choose((READ,), _kernel(tmp_path, kprobes=False))[0].method is None


def test_forced_tracepoint(tmp_path: Path) -> None:
    choices = choose((READ,), _kernel(_tracefs(tmp_path), kprobes=True), force="tracepoint")
    assert (choices[0].method, choices[0].reason) == ("tracepoint", "tracepoint forced by configuration")
    (tmp_path / "empty" / "events").mkdir(parents=True)
    forced_missing = choose((READ,), _kernel(tmp_path / "empty", kprobes=True), force="tracepoint")
    assert forced_missing[0].method is None


def test_forced_raw_tracepoint_even_with_kprobes(tmp_path: Path) -> None:
    choices = choose(HTTP_PROBES, _kernel(_tracefs(tmp_path), kprobes=True), force="raw_tracepoint")
    assert {(c.method, c.reason) for c in choices} == {("raw_tracepoint", "raw_tracepoint forced by configuration")}
    no_raw = choose((READ,), _kernel(_tracefs(tmp_path / "old", raw=False), kprobes=True), force="raw_tracepoint")
    assert no_raw[0].method is None and "raw_syscalls tracepoints missing" in no_raw[0].reason


def test_cflags_for_plan(tmp_path: Path) -> None:
    kernel = _kernel(_tracefs(tmp_path), True, frozenset({"__x64_sys_read"}))
    choices = choose((READ, CLOSE), kernel)
    # close alone would not pay for a raw pair that runs for every syscall: its own tracepoint
    assert cflags_for(choices) == ["-DKP_read", "-DTP_close"]
    assert choices[1].reason == f"__x64_sys_close is not traceable; {OWN_TP_REASON}"
    assert cflags_for(choose((READ, CLOSE), kernel, force="tracepoint")) == ["-DTP_read", "-DTP_close"]
    (tmp_path / "none" / "events").mkdir(parents=True)
    assert cflags_for(choose((READ,), _kernel(tmp_path / "none", False))) == []


def test_sock_length_tracepoints_take_the_data_syscalls(tmp_path: Path) -> None:
    """6.3+ without kprobes: data syscalls through the sock pair, which runs for socket I/O
    only; accept, connect and close through the socket's state changes: no syscalls:*
    tracepoint (each slows every syscall on the node) and no raw pair at all."""
    kernel = _kernel(_tracefs(tmp_path, sock=True), kprobes=False)
    choices = {c.spec.name: c for c in plan(HTTP_PROBES, kernel, "HTTP")}
    data = {name for name, c in choices.items() if c.spec.data}
    assert data == {"read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg", "sendfile64"}
    assert {c.method for c in choices.values()} == {"sock_tracepoint"}
    assert choices["read"].reason == f"kprobes not available in this kernel; {SOCK_REASON}"
    assert choices["close"].reason == f"kprobes not available in this kernel; {SOCK_STATE_REASON}"
    flags = cflags_for(list(choices.values()))
    assert "-DSOCK_IO" in flags and "-DSK_read" in flags and "-DSK_close" in flags and "-DSOCK_STATE" in flags
    assert "-DRAW_SYSCALLS" not in flags and not [f for f in flags if f.startswith("-DTP_")]
    # without the state tracepoint, accept, connect and close take their own
    (tmp_path / "events" / "sock" / "inet_sock_set_state").rmdir()
    choices = {c.spec.name: c for c in plan(HTTP_PROBES, kernel, "HTTP")}
    assert {c.method for n, c in choices.items() if n not in data} == {"tracepoint"}
    assert choices["close"].reason == f"kprobes not available in this kernel; {OWN_TP_REASON}"
    assert "-DSOCK_STATE" not in cflags_for(list(choices.values()))
    # kprobes still come first; without BTF (no task registers) the raw pair takes everything
    assert {c.method for c in choose(HTTP_PROBES, _kernel(tmp_path, kprobes=True))} == {"kprobe"}
    assert {c.method for c in choose(HTTP_PROBES, _kernel(tmp_path, False, btf=False))} == {"raw_tracepoint"}


def test_forced_sock_tracepoint(tmp_path: Path) -> None:
    choices = {c.spec.name: c for c in choose(HTTP_PROBES, _kernel(_tracefs(tmp_path, sock=True), True),
                                              force="sock_tracepoint")}
    assert (choices["write"].method, choices["write"].reason) == ("sock_tracepoint",
                                                                  "sock_tracepoint forced by configuration")
    assert (choices["connect"].method, choices["connect"].reason) == ("sock_tracepoint",
                                                                      "sock_tracepoint forced by configuration")
    old = choose((READ,), _kernel(_tracefs(tmp_path / "old"), kprobes=True), force="sock_tracepoint")
    assert old[0].method is None and "kernel 6.3+" in old[0].reason
    tcp = choose(TCP_PROBES[:1], _kernel(_tracefs(tmp_path, TCP_PROBES), False), force="sock_tracepoint")
    assert tcp[0].method is None and "no sock-tracepoint variant" in tcp[0].reason


def test_plan_without_kprobes_is_all_raw(tmp_path: Path) -> None:
    choices = plan(HTTP_PROBES, _kernel(_tracefs(tmp_path), kprobes=False), "HTTP")
    assert cflags_for(choices).count("-DRAW_SYSCALLS") == 1
    with pytest.raises(LoadError, match="read"):
        plan(HTTP_PROBES, _kernel(_tracefs(tmp_path / "old", raw=False), kprobes=True), "HTTP",
             force="raw_tracepoint")


def test_syscall_ids_match_x86_64_headers() -> None:
    """The raw dispatch switches on __NR_* in C; the table here must name the same ids."""
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    require(header.is_file(), f"{header} (linux-libc-dev)")
    ids = dict(re.findall(r"#define __NR_(\w+) (\d+)", header.read_text()))
    for spec in HTTP_PROBES:
        assert spec.syscall_nr == int(ids[spec.name.removesuffix("64")]), spec.name
    assert all(spec.syscall_nr is None for spec in TCP_PROBES)


def test_symbol_traceable_without_list_trusts_kprobes() -> None:
    k = _kernel(None, True)
    assert k.symbol_traceable("__x64_sys_read")
    assert not _kernel(None, True, frozenset({"x"})).symbol_traceable("__x64_sys_read")


def test_tracepoint_exists(tmp_path: Path) -> None:
    _tracefs(tmp_path, (READ,))
    assert tracepoint_exists(tmp_path, "syscalls:sys_enter_read")
    assert not tracepoint_exists(tmp_path, "syscalls:sys_enter_nope")
    assert not tracepoint_exists(None, "syscalls:sys_enter_read")


def test_detect_kernel_on_fixture_tracefs(tmp_path: Path) -> None:
    _tracefs(tmp_path, kprobes=True)
    (tmp_path / "available_filter_functions").write_text(
        "__x64_sys_read\n__x64_sys_write [kernel]\ntcp_sendmsg\n", encoding="ascii")
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"")
    k = detect_kernel(tmp_path, btf_path=btf)
    assert k.kprobes and k.btf and k.tracefs == tmp_path
    assert k.traceable == frozenset({"__x64_sys_read", "__x64_sys_write"})
    choices = {c.spec.name: c.method for c in choose(HTTP_PROBES, k)}
    assert choices["read"] == "kprobe" and choices["connect"] == "raw_tracepoint"


def test_detect_kernel_without_kprobes(tmp_path: Path) -> None:
    _tracefs(tmp_path)
    k = detect_kernel(tmp_path, btf_path=tmp_path / "missing")
    assert not k.kprobes and not k.btf and k.traceable == frozenset()


@pytest.mark.parametrize("required", [True, False])
def test_required_flag_is_carried(required: bool, tmp_path: Path) -> None:
    spec = ProbeSpec("http", "x", ("syscalls:sys_enter_x",), "", False, required)
    (choice,) = choose((spec,), _kernel(tmp_path, kprobes=True))
    assert choice.spec.required is required and choice.method is None  # no kprobe symbol, no tracepoint
