"""Stop the node's dockerd and start it again the way set-up does, for tests that need it gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import REPO

ENSURE_DOCKERD = REPO / "scripts" / "ensure-dockerd.sh"
PIDFILE = Path("/var/run/docker.pid")


def dockerd_pid() -> int:
    return int(PIDFILE.read_text().strip())


def alive(pid: int) -> bool:
    """A zombie has exited: only its parent (here PID 1) has still to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_dockerd(timeout: float = 30) -> int:
    """SIGTERM the dockerd named by its pid file and wait for it to exit; returns its pid."""
    pid = dockerd_pid()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd {pid} still runs {timeout} s after SIGTERM")
        time.sleep(0.05)
    return pid


def ensure_dockerd(wait_s: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run set-up's dockerd step; its log lines are on stderr."""
    env = dict(os.environ)
    if wait_s is not None:
        env["TELEGEN_DOCKERD_WAIT_S"] = str(wait_s)
    return subprocess.run(["bash", str(ENSURE_DOCKERD)], capture_output=True, text=True,
                          timeout=180, env=env)
