"""telegen.cpu_scheduling: every thread of the process, those started later included, and the
kernel's word for what each runs under. Run in a child process so pytest keeps its policy."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from telegen import cpu_scheduling
from tests.conftest import REPO

CHILD = """
import json, os, threading, time
from telegen import cpu_scheduling

def state():
    now = cpu_scheduling.report()
    return sorted(now["threads"].items()), sorted(now["slices_ms"].items())

os.setpriority(os.PRIO_PROCESS, 0, 3)  # a nice value of the operator's: kept
release = threading.Event()
early = threading.Thread(target=release.wait, daemon=True); early.start()  # running before apply()
out = {"before": state(), "set": cpu_scheduling.apply("background")}
late = []
def record():
    late.append((os.sched_getscheduler(0), cpu_scheduling._get_runtime_ns(threading.get_native_id())))
started_after = threading.Thread(target=record)
started_after.start(); started_after.join()
out["late"] = late[0]
while len(os.listdir("/proc/self/task")) > 2:  # the kernel lists an ended thread for a moment
    time.sleep(0.001)
out["background"] = state()
out["nice"] = os.getpriority(os.PRIO_PROCESS, early.native_id)
cpu_scheduling.apply("normal")
out["normal"] = state()
out["early_now"] = os.sched_getscheduler(early.native_id)
print(json.dumps(out))
"""


def test_apply_sets_every_thread_and_new_threads_inherit() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    (policies, slices) = out["before"]
    assert policies == [["normal", 2]] and out["set"] == 2
    default_slice = slices[0][0]
    assert len(slices) == 1 and default_slice != "10", slices  # the kernel's own, 0.7 ms x (1 + log2 CPUs)
    assert out["late"] == [os.SCHED_BATCH, cpu_scheduling.BACKGROUND_SLICE_NS]
    assert out["background"] == [[["batch", 2]], [["10", 2]]]
    assert out["nice"] == 3
    assert out["normal"] == [[["normal", 2]], [[default_slice, 2]]] and out["early_now"] == os.SCHED_OTHER


def test_a_refusal_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(tid: int, policy: int, slice_ns: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(cpu_scheduling, "_set", refuse)
    with caplog.at_level(logging.WARNING, logger="telegen.cpu_scheduling"):
        cpu_scheduling.apply_logged("background")
    assert "cannot put the agent's threads under the background CPU scheduling mode" in caplog.text


def test_the_report_names_what_the_kernel_reports() -> None:
    tids = [int(t) for t in os.listdir("/proc/self/task")]
    names = {os.SCHED_OTHER: "normal", os.SCHED_BATCH: "batch"}
    expected: dict[str, int] = {}
    for tid in tids:
        name = names[os.sched_getscheduler(tid)]
        expected[name] = expected.get(name, 0) + 1
    report = cpu_scheduling.report()
    assert report["threads"] == expected
    assert sum(report["slices_ms"].values()) == len(tids)
