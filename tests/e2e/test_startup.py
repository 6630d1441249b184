"""Start-up, as `telegen run` does it: the API answers while the BPF programs load, /ready flips
once capture is attached, every phase is logged and shown in /status, and a SIGTERM during the
compile exits cleanly. Durations are recorded here, never asserted (bench/ owns timing claims)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest

from telegen.api.openapi_schemas import STATUS
from tests.conftest import REPO, have_bcc, have_root, require
from tests.e2e.agent_harness import free_port

pytestmark = [pytest.mark.bpf, pytest.mark.root]

PHASES = {"config", "btf", "agent_build", "api", "stages", "http_bpf", "tcp_bpf", "wait_for_bpf"}


def get(port: int, path: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@dataclass
class Startup:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    healthz_at: float | None = None  # seconds after spawn of the first 200 from /healthz
    ready_at: float | None = None
    not_ready_checks: list[str] = field(default_factory=list)  # /ready `ebpf` reasons seen before 200


def spawn(tmp: Path) -> Startup:
    port = free_port()
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
self_telemetry: {{listen: "127.0.0.1:{port}"}}
otlp: {{endpoint: ""}}
export: {{console: {{enabled: false}}}}
discovery: {{kubernetes: {{enabled: false}}, docker: {{enabled: false}}}}
""")
    log = tmp / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "telegen"), "run", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
    return Startup(proc, port, log)


def poll(s: Startup, until_ready: bool, timeout: float = 90.0) -> None:
    """Poll /healthz and /ready every 20 ms; stop at the first ready (or first healthz)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        assert s.proc.poll() is None, f"agent exited {s.proc.returncode}: {s.log.read_text()[-3000:]}"
        try:
            if s.healthz_at is None and get(s.port, "/healthz")[0] == 200:
                s.healthz_at = time.monotonic() - began
                if not until_ready:
                    return
            code, body = get(s.port, "/ready")
            if code == 200:
                s.ready_at = time.monotonic() - began
                return
            checks = body.get("checks")
            if isinstance(checks, dict):
                s.not_ready_checks.append(str(checks.get("ebpf")))
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"agent not ready within {timeout:g}s: {s.log.read_text()[-3000:]}")


def stop(s: Startup) -> int:
    if s.proc.poll() is None:
        s.proc.send_signal(signal.SIGTERM)
    try:
        return s.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        raise


@pytest.fixture(scope="module")
def need_agent() -> None:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc)")
    require((REPO / ".venv" / "bin" / "telegen").exists(), ".venv/bin/telegen (run make setup)")


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory, need_agent: None) -> Iterator[Startup]:
    s = spawn(tmp_path_factory.mktemp("startup"))
    try:
        poll(s, until_ready=True)
        yield s
    finally:
        stop(s)


def test_healthz_answers_while_bpf_loads(started: Startup, record_property: Callable[[str, object], None]) -> None:
    record_property("healthz_seconds", started.healthz_at)
    record_property("start_to_ready_seconds", started.ready_at)
    assert started.healthz_at is not None and started.ready_at is not None
    assert started.healthz_at < started.ready_at
    # before it was ready, /ready said why, in the spec's "failed: <reason>" form
    assert started.not_ready_checks, "/ready never answered 503 before the programs were attached"
    assert set(started.not_ready_checks) <= {"failed: loading BPF programs", "failed: starting the pipeline"}
    code, body = get(started.port, "/ready")
    assert code == 200 and body["checks"] == {"ebpf": "ok", "otlp": "disabled", "discovery": "ok"}


def test_phases_logged_and_in_status(started: Startup, record_property: Callable[[str, object], None]) -> None:
    logged = dict(re.findall(r"start-up phase (\w+): ([\d.]+)s", started.log.read_text()))
    assert set(logged) == PHASES, logged
    assert "capture attached and pipeline running" in started.log.read_text()
    code, status = get(started.port, "/status")
    jsonschema.validate(status, STATUS)  # the live answer, against the schema /openapi.json publishes
    startup = status["startup"]
    assert code == 200 and isinstance(startup, dict)
    phases = {p["name"]: p for p in startup["phases"]}
    record_property("startup", json.dumps(startup))
    print(json.dumps(startup, indent=1))  # shown with -s: the per-phase timings of this start
    assert set(phases) == PHASES
    assert all(p["start"] >= 0 and p["seconds"] >= 0 for p in phases.values())
    assert phases["http_bpf"]["compile_seconds"] > 0 and phases["tcp_bpf"]["compile_seconds"] > 0
    # one compile at a time: TCP starts where HTTP ended (libbcc crashes on parallel compiles)
    assert phases["tcp_bpf"]["start"] >= phases["http_bpf"]["start"] + phases["http_bpf"]["seconds"] - 0.01
    assert isinstance(startup["seconds"], float) and startup["seconds"] >= phases["tcp_bpf"]["start"]


def test_sigterm_while_loading_exits_zero(tmp_path: Path, need_agent: None) -> None:
    s = spawn(tmp_path)
    try:
        poll(s, until_ready=False)
        code, body = get(s.port, "/ready")
        loading = code == 503 and body["checks"]["ebpf"] == "failed: loading BPF programs"  # type: ignore[index]
    finally:
        rc = stop(s)
    assert rc == 0, s.log.read_text()[-3000:]
    assert "stopped" in s.log.read_text()
    # /healthz answers ~1.5 s before the compiles end, so the stop lands while loading
    assert loading, "the programs were attached before SIGTERM: the stop-while-loading path was not exercised"
