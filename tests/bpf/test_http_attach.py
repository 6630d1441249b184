"""Which HTTP programs get attached on this kernel, and what the raw_syscalls dispatch ignores:
a storm of syscalls that are not HTTP makes no records and no pairing entries."""

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

from telegen.capture.probes import HTTP_PROBES, RAW_REASON
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
    """Without kprobes: exactly the raw_syscalls pair, dispatching every HTTP syscall by id."""
    kernel = capture.stage.kernel
    assert kernel is not None
    programs = capture.stage.status()["programs"]
    if kernel.kprobes:  # elsewhere: kprobes win, per syscall (tests/bpf/test_kprobe_qemu.py runs that path)
        assert {p["type"] for p in programs if p["attached"]} <= {"kprobe", "kretprobe"}
        return
    assert [(p["name"], p["type"], p["target"], p["attached"]) for p in programs] == [
        ("http_sys_enter", "raw_tracepoint", "raw_syscalls:sys_enter", True),
        ("http_sys_exit", "raw_tracepoint", "raw_syscalls:sys_exit", True)]
    enter, exit_ = programs
    assert enter["reason"] == f"kprobes not available in this kernel; {RAW_REASON}"
    assert {s["name"]: s["nr"] for s in enter["syscalls"]} == {p.name: p.syscall_nr for p in HTTP_PROBES}
    assert {s["name"] for s in exit_["syscalls"]} == {p.name for p in HTTP_PROBES} - {"close"}
    assert enter["id"] != exit_["id"]
    assert _kernel_prog_type(enter["id"]) == _kernel_prog_type(exit_["id"]) == "raw_tracepoint"


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
