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

def policies():
    return sorted(cpu_scheduling.thread_policies().items())

release = threading.Event()
early = threading.Thread(target=release.wait, daemon=True); early.start()  # running before apply()
out = {"before": policies(), "set": cpu_scheduling.apply("batch")}
late = []
started_after = threading.Thread(target=lambda: late.append(os.sched_getscheduler(0)))
started_after.start(); started_after.join()
out["late"] = late[0]
while len(os.listdir("/proc/self/task")) > 2:  # the kernel lists an ended thread for a moment
    time.sleep(0.001)
out["after_batch"] = policies()
cpu_scheduling.apply("normal")
out["after_normal"] = policies()
out["early_now"] = os.sched_getscheduler(early.native_id)
print(json.dumps(out))
"""


def test_apply_sets_every_thread_and_new_threads_inherit() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["before"] == [["normal", 2]] and out["set"] == 2
    assert out["late"] == os.SCHED_BATCH and out["after_batch"] == [["batch", 2]]
    assert out["after_normal"] == [["normal", 2]] and out["early_now"] == os.SCHED_OTHER


def test_a_refusal_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(tid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with caplog.at_level(logging.WARNING, logger="telegen.cpu_scheduling"):
        cpu_scheduling.apply_logged("batch")
    assert "cannot put the agent's threads under the batch CPU scheduling policy" in caplog.text


def test_thread_policies_names_what_the_kernel_reports() -> None:
    assert cpu_scheduling.thread_policies() == {"normal": len(os.listdir("/proc/self/task"))}
