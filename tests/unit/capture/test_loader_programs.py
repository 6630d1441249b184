"""telegen.capture.loader: how the raw_syscalls and sock length pairs, and the state-change
program standing in for accept/connect/close, are described in /status/ebpf (no BCC needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from telegen.capture.loader import LoadedBpf, ProgramInfo
from telegen.capture.probes import HTTP_PROBES, TCP_PROBES, ProbeChoice


def _described(attached_events: tuple[bytes, ...]) -> list[dict[str, Any]]:
    choices = [ProbeChoice(spec, "raw_tracepoint", "kprobes not available in this kernel; raw") for spec in HTTP_PROBES]
    loaded = LoadedBpf.__new__(LoadedBpf)  # skip compiling: only the description is under test
    funcs = {f"raw_tracepoint__{e}".encode(): SimpleNamespace(fd=-1) for e in ("sys_enter", "sys_exit")}
    loaded._bpf = SimpleNamespace(funcs=funcs, raw_tracepoint_fds=dict.fromkeys(attached_events, 3))
    loaded._programs = []
    loaded._attach(choices, "http")
    return [p.as_dict() for p in loaded.programs()]


def test_raw_pair_lists_the_syscalls_it_dispatches() -> None:
    enter, exit_ = _described((b"sys_enter", b"sys_exit"))
    assert (enter["name"], enter["type"], enter["target"]) == ("http_sys_enter", "raw_tracepoint",
                                                               "raw_syscalls:sys_enter")
    assert (exit_["name"], exit_["target"]) == ("http_sys_exit", "raw_syscalls:sys_exit")
    assert enter["attached"] is True and exit_["attached"] is True
    assert enter["reason"] == "kprobes not available in this kernel; raw"
    entered = {s["name"]: s["nr"] for s in enter["syscalls"]}
    assert entered == {p.name: p.syscall_nr for p in HTTP_PROBES}
    assert entered["read"] == 0 and entered["accept4"] == 288
    exited = {s["name"] for s in exit_["syscalls"]}
    assert exited == set(entered) - {"close"}  # close is handled at entry


def test_raw_pair_not_attached_is_reported() -> None:
    enter, exit_ = _described((b"sys_enter",))
    assert enter["attached"] is True and exit_["attached"] is False


def test_sock_pair_lists_the_data_syscalls_each_dispatches() -> None:
    data = [ProbeChoice(spec, "sock_tracepoint", "sock") for spec in HTTP_PROBES if spec.data]
    loaded = LoadedBpf.__new__(LoadedBpf)
    names = ("raw_tracepoint__sock_recv_length", "raw_tracepoint__sock_send_length")
    loaded._bpf = SimpleNamespace(funcs={n.encode(): SimpleNamespace(fd=-1) for n in names},
                                  raw_tracepoint_fds={b"sock_recv_length": 3})
    loaded._programs = []
    loaded._attach(data, "http")
    recv, send = (p.as_dict() for p in loaded.programs())
    assert (recv["name"], recv["type"], recv["target"], recv["attached"]) == (
        "http_sock_recv_length", "raw_tracepoint", "sock:sock_recv_length", True)
    assert (send["name"], send["target"], send["attached"]) == ("http_sock_send_length", "sock:sock_send_length", False)
    assert [s["name"] for s in recv["syscalls"]] == ["read", "readv", "recvfrom", "recvmsg"]
    assert {s["name"]: s["nr"] for s in send["syscalls"]} == {"write": 1, "writev": 20, "sendto": 44, "sendmsg": 46,
                                                              "sendfile64": 40}


def test_state_changes_list_the_syscalls_they_stand_in_for() -> None:
    choices = [ProbeChoice(spec, "sock_tracepoint", "sock") for spec in HTTP_PROBES]
    loaded = LoadedBpf.__new__(LoadedBpf)
    names = ("raw_tracepoint__sock_recv_length", "raw_tracepoint__sock_send_length",
             "tracepoint__sock__inet_sock_set_state")
    loaded._bpf = SimpleNamespace(funcs={n.encode(): SimpleNamespace(fd=-1) for n in names},
                                  raw_tracepoint_fds={b"sock_recv_length": 3, b"sock_send_length": 4})
    loaded._programs = []
    loaded._attach(choices, "http")
    recv, send, state = (p.as_dict() for p in loaded.programs())
    assert (state["name"], state["target"], state["attached"]) == ("http_inet_sock_set_state",
                                                                   "sock:inet_sock_set_state", True)
    assert {s["name"]: s["nr"] for s in state["syscalls"]} == {"accept4": 288, "accept": 43, "connect": 42,
                                                               "close": 3}
    assert "close" not in {s["name"] for s in recv["syscalls"] + send["syscalls"]}


def test_tcp_accept_by_state_changes_is_listed_by_name() -> None:
    """tcp's own inet_sock_set_state program also attributes accepted sockets: one entry per
    syscall it stands in for, with that program's id, beside the program's own entry."""
    choices = [ProbeChoice(spec, "sock_tracepoint" if spec.name.startswith("accept") else "tracepoint", "why")
               for spec in TCP_PROBES[:1] + TCP_PROBES[-2:]]
    loaded = LoadedBpf.__new__(LoadedBpf)
    loaded._bpf = SimpleNamespace(funcs={b"tracepoint__sock__inet_sock_set_state": SimpleNamespace(fd=-1)})
    loaded._programs = []
    loaded._attach(choices, "tcp")
    own, accept4, accept = (p.as_dict() for p in loaded.programs())
    assert own["name"] == "tcp_inet_sock_set_state" and own["attached"]
    assert [(p["name"], p["target"], p["attached"]) for p in (accept4, accept)] == [
        ("tcp_accept4", "sock:inet_sock_set_state", True), ("tcp_accept", "sock:inet_sock_set_state", True)]


def test_other_programs_have_no_syscalls_key() -> None:
    info = ProgramInfo("http_sys_enter_read", "tracepoint", "syscalls:sys_enter_read", True, 7, "forced")
    assert "syscalls" not in info.as_dict()
