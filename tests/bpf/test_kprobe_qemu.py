"""The kprobe attach path, tested for real in Debian's 6.1 kernel booted under QEMU (TCG).

This machine's kernel has no kprobes, so tests here boot ``/boot/vmlinuz-6.1.0-*-amd64`` with
the host root shared read-only over virtio-9p (tests/vm/harness.py) and run code from this very
repo and venv inside the guest. Each test is one VM boot (about 5 s) plus BCC compiling under
TCG (tens of seconds, more when the host is busy).
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any

import pytest

from tests.conftest import REPO, require
from tests.vm.harness import find_kernel, kernel_release, missing_prerequisites, run_in_vm

pytestmark = [pytest.mark.slow, pytest.mark.bpf]

VENV_PYTHON = REPO / ".venv" / "bin" / "python"


@pytest.fixture
def need_vm() -> None:
    for what in missing_prerequisites():
        require(False, what)
    require(VENV_PYTHON.is_file(), f"the repo venv at {VENV_PYTHON} (make setup)")


def _json_from(stdout: str) -> dict[str, Any]:
    """The JSON object the guest printed: the whole stdout, else its last line that parses."""
    try:
        value = json.loads(stdout)
    except ValueError:
        value = None
        for line in reversed(stdout.splitlines()):
            if line.lstrip().startswith("{"):
                try:
                    value = json.loads(line)
                    break
                except ValueError:
                    continue
    assert isinstance(value, dict), "no JSON object on the guest's stdout"
    return value


def _run(command: list[str], timeout: float) -> tuple[Any, dict[str, Any]]:
    t0 = time.monotonic()
    res = run_in_vm(command, timeout=timeout, cwd=REPO)
    print(f"VM run took {time.monotonic() - t0:.1f}s (guest rc={res.returncode})")
    assert not res.timed_out, f"the VM did not finish within {timeout}s\n{res.report()}"
    try:
        data = _json_from(res.stdout)
    except AssertionError as exc:
        pytest.fail(f"{exc}\n{res.report()}", pytrace=False)
    return res, data


@pytest.mark.timeout(300)
def test_vm_kprobe_smoke(need_vm: None) -> None:
    """The harness alone: a BCC kprobe + kretprobe on tcp_v4_connect fire in the 6.1 guest."""
    res, data = _run([str(VENV_PYTHON), "tests/vm/kprobe_smoke.py"], timeout=240)
    kernel = find_kernel()
    assert kernel is not None
    ctx = res.report()
    assert data["kernel"]["release"] == kernel_release(kernel), ctx
    assert data["kernel"]["kprobes"] is True, ctx
    attached = {p["type"] for p in data["programs"] if p.get("attached")}
    assert attached == {"kprobe", "kretprobe"}, f"{data['programs']}\n{ctx}"
    c = data["connects"]
    assert c["entries"] >= 1 and c["returns"] >= 1, ctx
    assert c["last_ret"] == 0 and c["last_dport"] == c["port"], ctx
    assert res.returncode == 0, ctx


@pytest.mark.timeout(360)
def test_kprobe_path_in_vm(need_vm: None) -> None:
    """telegen's own loader, in a kernel with kprobes: kprobes are chosen and an exchange is captured."""
    if importlib.util.find_spec("telegen.capture.selftest") is None:
        pytest.fail("telegen.capture.selftest does not exist yet (python -m telegen.capture.selftest --json)")
    res, data = _run([str(VENV_PYTHON), "-m", "telegen.capture.selftest", "--json"], timeout=300)
    ctx = f"{json.dumps(data, indent=1)[:6000]}\n{res.report()}"
    assert data["kernel"]["release"].startswith("6.1."), ctx
    assert data["kernel"]["kprobes"] is True, ctx
    kprobes = [p for p in data["programs"] if p.get("type") in ("kprobe", "kretprobe") and p.get("attached") is True]
    assert kprobes, f"no kprobe/kretprobe program attached\n{ctx}"
    exchanges = [
        x
        for x in data["exchanges"]
        if x.get("method") == "GET" and x.get("path") == "/selftest" and x.get("status") == 200
    ]
    assert exchanges, f"the GET /selftest -> 200 exchange was not captured\n{ctx}"
    assert res.returncode == 0, ctx


@pytest.mark.timeout(360)
def test_raw_tracepoint_path_in_vm(need_vm: None) -> None:
    """A 6.1 kernel without kprobes would take the raw_syscalls path: 6.1's verifier must accept
    it too. Forced here, since this guest has kprobes."""
    res, data = _run([str(VENV_PYTHON), "-m", "telegen.capture.selftest", "--json", "--attach", "raw_tracepoint"],
                     timeout=300)
    ctx = f"{json.dumps(data, indent=1)[:6000]}\n{res.report()}"
    assert data["kernel"]["release"].startswith("6.1."), ctx
    programs = [(p.get("type"), p.get("target"), p.get("attached")) for p in data["programs"]]
    assert programs == [("raw_tracepoint", "raw_syscalls:sys_enter", True),
                        ("raw_tracepoint", "raw_syscalls:sys_exit", True)], ctx
    assert any(x.get("path") == "/selftest" and x.get("status") == 200 for x in data["exchanges"]), ctx
    assert res.returncode == 0, ctx
