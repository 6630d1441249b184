"""schemathesis against the live API (auth on, token supplied, debug on): no failures.

Fixed seed and bounded examples keep it deterministic and under a minute. Excluded: the CPU
profile (each call samples for 1..120 s) and the three profiles the contract answers with 501
(a 5xx that schemathesis always counts as a server error); unit tests cover those.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from telegen.api import ApiServer
from telegen.config import Config
from tests.conftest import require
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import TOKEN, settings

CLI = Path(sys.executable).parent / "schemathesis"


@pytest.fixture
def live_api() -> Iterator[str]:
    st = settings(auth={"enabled": True, "bearer_token": TOKEN}, debug={"enabled": True},
                  rate_limit={"requests_per_second": 10_000, "burst": 10_000,
                              "admin_requests_per_second": 10_000, "admin_burst": 10_000})
    # The fake's config carries the same settings, so an /admin/reload keeps them.
    control = FakeControl(Config().model_copy(update={"self_telemetry": st}))
    was_tracing = tracemalloc.is_tracing()
    server = ApiServer(control, st)
    server.start()
    try:
        host, port = server.bound_address
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        if not was_tracing:
            tracemalloc.stop()  # /debug/pprof/heap started it; it would slow every later test


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_failures(live_api: str, tmp_path: Path) -> None:
    require(CLI.exists(), "the schemathesis CLI in the venv")
    cmd = [str(CLI), "run", f"{live_api}/openapi.json",
           "-H", f"Authorization: Bearer {TOKEN}",
           "--checks", "all", "--mode", "all", "--max-examples", "10", "--seed", "1",
           "--exclude-path-regex", r"/debug/pprof/(profile|block|mutex|trace)$",
           "--no-color"]
    # cwd: the CLI keeps a .schemathesis/ cache in its working directory; keep it out of the repo.
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=110, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested:" in result.stdout
