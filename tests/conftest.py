"""Shared test prerequisites: under CI=true a missing prerequisite fails the test, never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def require(condition: bool, what: str) -> None:
    """Fail (under CI) or skip (elsewhere) with a message saying which prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {what}", pytrace=False)
    pytest.skip(f"prerequisite missing: {what}")


def have_root() -> bool:
    return os.geteuid() == 0


def have_bcc() -> bool:
    try:
        import bcc  # noqa: F401
    except ImportError:
        return False
    return True


def have_docker() -> bool:
    """A Docker engine that answers `docker info` within 20 s."""
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture
def need_root() -> None:
    require(have_root(), "root (run the suite as root: make test)")


@pytest.fixture
def need_bpf() -> None:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc, via the --system-site-packages venv)")
    require(Path("/sys/kernel/tracing/events").is_dir(), "tracefs at /sys/kernel/tracing (make setup mounts it)")


@pytest.fixture
def need_docker() -> None:
    require(have_root(), "root, to use the Docker engine")
    require(have_docker(), "a running Docker engine (make setup starts dockerd)")
