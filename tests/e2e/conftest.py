"""End-to-end fixtures: one agent and one OTLP receiver per test module, and a keep-alive HTTP
server in its own process. A module that needs something else defines its own fixture."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, have_bcc, have_root, require
from tests.e2e.agent_harness import SERVER_CODE, RunningAgent
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def agent(receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc)")
    require((REPO / ".venv" / "bin" / "telegen").exists(), ".venv/bin/telegen (run make setup)")
    running = RunningAgent(tmp_path_factory.mktemp("agent"), receiver)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    yield port
    proc.kill()


