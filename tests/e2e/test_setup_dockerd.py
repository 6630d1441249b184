"""Set-up's dockerd step against the real engine in each state it can find it in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import have_docker
from tests.dockerd_control import PIDFILE, alive, dockerd_pid, ensure_dockerd, stop_dockerd

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def engine(need_docker: None) -> Iterator[None]:
    """Whatever a test does to dockerd, the next test finds one that answers."""
    yield
    result = ensure_dockerd(wait_s=2)
    assert result.returncode == 0 and have_docker(), result.stderr


def test_answering_dockerd_is_kept(engine: None) -> None:
    pid = dockerd_pid()
    result = ensure_dockerd()
    assert result.returncode == 0, result.stderr
    assert "dockerd answers" in result.stderr
    assert dockerd_pid() == pid


def test_starting_dockerd_is_waited_for_not_replaced(engine: None) -> None:
    stop_dockerd()
    with open("/var/log/telegen-dockerd.log", "ab") as log:
        started = subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    result = ensure_dockerd()
    assert result.returncode == 0, result.stderr
    assert "starting dockerd" not in result.stderr and "stopping dockerd" not in result.stderr
    assert dockerd_pid() == started.pid and have_docker()


def test_hung_dockerd_is_replaced(engine: None) -> None:
    hung = dockerd_pid()
    os.kill(hung, signal.SIGSTOP)
    try:
        result = ensure_dockerd(wait_s=2)
    finally:
        if alive(hung):  # the script failed to stop it: leave nothing frozen behind
            os.kill(hung, signal.SIGKILL)
    assert result.returncode == 0, result.stderr
    assert f"dockerd {hung} runs but does not answer" in result.stderr
    assert f"stopping dockerd {hung}" in result.stderr
    assert not alive(hung)
    assert dockerd_pid() != hung and have_docker()


def test_exited_dockerd_not_yet_reaped_is_not_taken_for_running(engine: None, tmp_path: Path) -> None:
    """An exited dockerd stays in the process table until its parent reaps it; set-up starts a new
    one instead of waiting on it (this state failed a CI run's set-up in 3 s)."""
    stop_dockerd()
    fake = tmp_path / "dockerd"
    shutil.copy("/bin/true", fake)
    zombie = subprocess.Popen([str(fake)])  # not waited for until the end: a zombie named dockerd
    try:
        while alive(zombie.pid):
            time.sleep(0.01)
        result = ensure_dockerd()
    finally:
        zombie.wait()
    assert result.returncode == 0, result.stderr
    assert "runs but does not answer" not in result.stderr
    assert "starting dockerd" in result.stderr and have_docker()


def test_pidfile_naming_another_process_is_cleared(engine: None) -> None:
    """dockerd will not start while its pid file names a live process, whichever process that is."""
    stop_dockerd()
    other = subprocess.Popen(["sleep", "120"])
    try:
        PIDFILE.write_text(f"{other.pid}\n")
        result = ensure_dockerd()
        assert result.returncode == 0, result.stderr
        assert f"removed stale {PIDFILE} (pid {other.pid} is not a dockerd)" in result.stderr
        assert have_docker() and dockerd_pid() != other.pid
        assert other.poll() is None  # the process the stale file named is left alone
    finally:
        other.kill()
        other.wait()
