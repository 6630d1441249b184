"""deploy/container-entrypoint.sh picks the kernel headers BCC compiles against and says which."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "deploy" / "container-entrypoint.sh"
RELEASE = os.uname().release


def run(tmp_path: Path, *args: str, host: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the shim as `hostenv.sh <fake agent> args` in fixture trees; the fake agent prints its env."""
    agent = tmp_path / "agent"
    agent.write_text('#!/bin/sh\necho "HEADERS=$TELEGEN_KERNEL_HEADERS"\necho "BCC=${BCC_KERNEL_SOURCE:-}"\n'
                     'echo "ARGS=$*"\n')
    agent.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "TELEGEN_MODULES_DIR": str(tmp_path / "lib/modules"),
        "TELEGEN_SRC_DIR": str(tmp_path / "usr/src"),
        "TELEGEN_HOST_ROOT": str(tmp_path / "host"),
        "TELEGEN_STATE_DIR": str(tmp_path / "state"),
    }
    return subprocess.run(["bash", str(SCRIPT), str(agent), *args], capture_output=True, text=True,
                          env=env, timeout=30)


def out(proc: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def debian_headers(root: Path) -> Path:
    build = root / "usr/src/linux-headers-6.1.0-99-amd64"
    (build / "include").mkdir(parents=True)
    (root / "usr/src/linux-headers-6.1.0-99-common/include").mkdir(parents=True)
    return build


def test_host_headers_are_preferred(tmp_path: Path) -> None:
    debian_headers(tmp_path)
    # the host's build link is absolute in the host's namespace: it must be followed under /host
    host_build = tmp_path / "host/usr/src/linux-headers-host"
    (host_build / "include").mkdir(parents=True)
    (tmp_path / "host/lib/modules" / RELEASE).mkdir(parents=True)
    (tmp_path / "host/lib/modules" / RELEASE / "build").symlink_to("/usr/src/linux-headers-host")
    res = out(run(tmp_path, "run", "--config", "/x.yaml"))
    assert res["HEADERS"] == f"host:/lib/modules/{RELEASE}/build"
    assert res["ARGS"] == "run --config /x.yaml"
    assert os.readlink(tmp_path / "lib/modules" / RELEASE / "build") == str(host_build)
    assert (tmp_path / "state/config-path").read_text().strip() == "/x.yaml"
    # a restart reports the same decision
    assert out(run(tmp_path, "run"))["HEADERS"] == f"host:/lib/modules/{RELEASE}/build"


def test_debian_headers_linked_when_host_has_none(tmp_path: Path) -> None:
    build = debian_headers(tmp_path)
    proc = run(tmp_path)
    res = out(proc)
    assert res["HEADERS"] == f"linked:{build}"
    kdir = tmp_path / "lib/modules" / RELEASE
    assert os.readlink(kdir / "build") == str(build)
    assert os.readlink(kdir / "source") == str(tmp_path / "usr/src/linux-headers-6.1.0-99-common")
    assert "linked" in proc.stderr  # said in the logs too
    assert out(run(tmp_path))["HEADERS"] == f"linked:{build}"


def test_unresolvable_host_link_falls_back_to_debian(tmp_path: Path) -> None:
    build = debian_headers(tmp_path)
    (tmp_path / "host/lib/modules" / RELEASE).mkdir(parents=True)
    (tmp_path / "host/lib/modules" / RELEASE / "build").symlink_to("/usr/src/not-mounted")
    assert out(run(tmp_path))["HEADERS"] == f"linked:{build}"


def test_unwritable_modules_dir_uses_bcc_kernel_source(tmp_path: Path) -> None:
    build = debian_headers(tmp_path)
    # a file where the directory should be: nothing can be linked there, even as root
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/modules").write_text("")
    res = out(run(tmp_path))
    assert res["HEADERS"] == f"env:{build}" and res["BCC"] == str(build)


def test_no_headers_at_all_is_reported(tmp_path: Path) -> None:
    proc = run(tmp_path)
    assert out(proc)["HEADERS"] == "none"
    assert "BCC may fail" in proc.stderr


@pytest.mark.parametrize("command", ["version", "check-config", "status"])
def test_other_commands_skip_the_host_preparation(tmp_path: Path, command: str) -> None:
    debian_headers(tmp_path)
    res = out(run(tmp_path, command))
    assert res["HEADERS"] == ""
    assert not (tmp_path / "lib/modules").exists()
