"""Which HTTP programs get attached on this kernel, and what the dispatch ignores: a storm of
syscalls that are not HTTP makes no records and no pairing entries. The raw_syscalls pair, no
longer this kernel's choice, is forced here to keep it tested."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from telegen.capture.probes import (
    HTTP_PROBES,
    SOCK_IO_TRACEPOINTS,
    SOCK_REASON,
    SOCK_STATE,
    SOCK_STATE_REASON,
    tracepoint_exists,
)
from tests.bpf.http_fixtures import Capture, keepalive_gets, ok_handler, serve
from tests.conftest import have_bcc, have_root, require

pytestmark = [pytest.mark.bpf, pytest.mark.root]

# Writes HTTP-looking bytes to a pipe and a file and reads them back: not sockets, never paired.
_NOT_SOCKETS = """
import os, tempfile
r, w = os.pipe()
f = tempfile.TemporaryFile()
for _ in range(2000):
    for data in (b"GET / HTTP/1.1\\r\\n\\r\\n", b"HTTP/1.1 200 OK\\r\\n\\r\\n"):
        os.write(w, data); os.read(r, 64); f.write(data)
f.flush(); f.seek(0); f.read()
"""


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc via the --system-site-packages venv)")
    cap = Capture()
    yield cap
    cap.stage.stop(2.0)


def _kernel_prog_type(prog_id: int) -> str:
    require(shutil.which("bpftool") is not None, "bpftool, to ask the kernel for a program's type")
    out = subprocess.run(["bpftool", "-j", "prog", "show", "id", str(prog_id)], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    return str(json.loads(out)["type"])


def test_programs_match_the_kernel(capture: Capture) -> None:
    """Without kprobes, on 6.3+: the sock length pair dispatching the data syscalls by id, and
    accept, connect and close through inet_sock_set_state: no syscalls:* tracepoint (each one
    slows every syscall on the node) and no raw_syscalls pair."""
    kernel = capture.stage.kernel
    assert kernel is not None
    programs = capture.stage.status()["programs"]
    if kernel.kprobes:  # elsewhere: kprobes win, per syscall (tests/bpf/test_kprobe_qemu.py runs that path)
        assert {p["type"] for p in programs if p["attached"]} <= {"kprobe", "kretprobe"}
        return
    require(all(tracepoint_exists(kernel.tracefs, tp) for tp in SOCK_IO_TRACEPOINTS),
            "sock:sock_recv_length/sock_send_length (kernel 6.3+), which this machine's kernel has")
    why = "kprobes not available in this kernel"
    assert not [p for p in programs if p["target"].startswith("syscalls:")]
    state = [p for p in programs if p["reason"] == f"{why}; {SOCK_STATE_REASON}"]
    assert [(p["name"], p["type"], p["target"], p["attached"]) for p in state] == [
        ("http_inet_sock_set_state", "tracepoint", SOCK_STATE, True)]
    assert {s["name"] for s in state[0]["syscalls"]} == {"accept4", "accept", "connect", "close"}
    sock = [p for p in programs if p["reason"] == f"{why}; {SOCK_REASON}"]
    assert [(p["name"], p["type"], p["target"], p["attached"]) for p in sock] == [
        ("http_sock_recv_length", "raw_tracepoint", "sock:sock_recv_length", True),
        ("http_sock_send_length", "raw_tracepoint", "sock:sock_send_length", True)]
    recv, send = sock
    assert {s["name"] for s in recv["syscalls"]} == {"read", "readv", "recvfrom", "recvmsg"}
    assert {s["name"] for s in send["syscalls"]} == {"write", "writev", "sendto", "sendmsg", "sendfile64"}
    assert {s["name"]: s["nr"] for s in recv["syscalls"] + send["syscalls"]} == {
        p.name: p.syscall_nr for p in HTTP_PROBES if p.data}
    assert len(programs) == 3 and all(p["attached"] for p in programs)
    assert {p["name"]: _kernel_prog_type(p["id"]) for p in programs} == {
        "http_sock_recv_length": "raw_tracepoint", "http_sock_send_length": "raw_tracepoint",
        "http_inet_sock_set_state": "tracepoint"}


@pytest.mark.slow
def test_forced_raw_syscalls_pair_lists_its_dispatch() -> None:
    """The raw_syscalls pair (kernels without kprobes before 6.3, or forced): two programs that
    dispatch every HTTP syscall by id. tests/bpf/test_http_capture.py captures through it."""
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module")
    cap = Capture(force="raw_tracepoint")
    try:
        programs = cap.stage.status()["programs"]
        assert [(p["name"], p["type"], p["target"], p["attached"]) for p in programs] == [
            ("http_sys_enter", "raw_tracepoint", "raw_syscalls:sys_enter", True),
            ("http_sys_exit", "raw_tracepoint", "raw_syscalls:sys_exit", True)]
        enter, exit_ = programs
        assert enter["reason"] == "raw_tracepoint forced by configuration"
        assert {s["name"]: s["nr"] for s in enter["syscalls"]} == {p.name: p.syscall_nr for p in HTTP_PROBES}
        assert {s["name"] for s in exit_["syscalls"]} == {p.name for p in HTTP_PROBES} - {"close"}
        assert _kernel_prog_type(enter["id"]) == _kernel_prog_type(exit_["id"]) == "raw_tracepoint"
    finally:
        cap.stage.stop(2.0)


def test_non_http_syscall_storm_makes_no_records(capture: Capture) -> None:
    before = capture.stage.counters()
    dd = subprocess.Popen(["dd", "if=/dev/zero", "of=/dev/null", "bs=64", "count=200000"],
                          stderr=subprocess.DEVNULL)
    pipes = subprocess.Popen([sys.executable, "-c", _NOT_SOCKETS])
    assert dd.wait(60) == 0 and pipes.wait(60) == 0
    # an HTTP exchange after the storm still comes through: the storm did not wedge anything
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler())
    with socket.create_connection((host, port)) as c:
        c.sendall(f"GET /after-storm/{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert c.recv(4096).endswith(b"hello")
    assert len(capture.wait(marker, 2)) == 2
    time.sleep(0.3)
    capture.wait("no such marker", 1, timeout=0.3)
    storm = {dd.pid, pipes.pid}
    assert [e for e in capture.seen if e.pid in storm] == []
    assert capture.stage.bpf is not None
    assert [k for k in capture.stage.bpf.hash_keys("http_conns") if k >> 32 in storm] == []
    after = capture.stage.counters()
    for lost in ("http_conn_map_full", "http_active_map_full", "http_ringbuf_full"):
        assert after[lost] == before[lost], lost


@pytest.mark.slow
def test_forced_per_syscall_tracepoints_still_capture() -> None:
    """The per-syscall tracepoints stay as a forced fallback (force_method="tracepoint")."""
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module")
    cap = Capture(force="tracepoint")
    try:
        programs = cap.stage.status()["programs"]
        attached = [p for p in programs if p["attached"]]
        assert {p["type"] for p in programs} == {"tracepoint"} and len(attached) >= 20
        assert {p["reason"] for p in attached} == {"tracepoint forced by configuration"}
        marker = uuid.uuid4().hex
        host, port = serve(ok_handler())
        keepalive_gets(host, port, f"/tp/{marker}", 2)
        got = cap.wait(marker, 4)
        assert sorted(e.role for e in got) == [1, 1, 2, 2]
        assert all(e.pid == os.getpid() for e in got)
    finally:
        cap.stage.stop(2.0)
