"""telegen.startup: phases timed from process start; capture stages load one at a time in the
background, and /ready's ebpf check says what it waits for."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from telegen import startup
from telegen.capture.probes import LoadError
from telegen.config import validate
from telegen.startup import CaptureSet, StartupPhases, process_age


class FakeBpf:
    compile_seconds = 0.01


class FakeStage:
    """Records overlapping start() calls: the loader must never run two at once."""

    active = 0
    overlapped = False

    def __init__(self, name: str, order: list[str], fail: Exception | None = None,
                 gate: threading.Event | None = None) -> None:
        self.name, self.order, self.fail, self.gate = name, order, fail, gate
        self.bpf: FakeBpf | None = None

    def start(self) -> None:
        FakeStage.active += 1
        FakeStage.overlapped |= FakeStage.active > 1
        try:
            if self.gate is not None:
                assert self.gate.wait(5)
            time.sleep(0.02)
            self.order.append(self.name)
            if self.fail is not None:
                raise self.fail
            self.bpf = FakeBpf()
        finally:
            FakeStage.active -= 1

    def readiness(self) -> str:
        return "ok"


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> CaptureSet:
    monkeypatch.setattr(startup, "kernel_btf", lambda: None)  # the unit tests need no kernel BTF
    FakeStage.active, FakeStage.overlapped = 0, False
    return CaptureSet(validate({}).agent.ebpf, StartupPhases())


def use(capture: CaptureSet, http: Any, tcp: Any) -> None:
    capture.http, capture.tcp = http, tcp


def test_process_age_counts_from_the_kernel_start_time() -> None:
    age = process_age()
    assert 0 < age < 24 * 3600  # pytest has been running for a little while, not since boot
    phases = StartupPhases()
    assert phases.now() == pytest.approx(age, abs=0.5)


def test_phases_are_recorded_in_order_with_extras(caplog: pytest.LogCaptureFixture) -> None:
    phases = StartupPhases()
    with caplog.at_level("INFO", "telegen.startup"), phases.phase("first"):
        pass
    phases.record("second", 1.0, 1.5, compile_seconds=0.25)
    snap = phases.snapshot()
    assert snap["seconds"] is None
    assert [p["name"] for p in snap["phases"]] == ["first", "second"]
    assert snap["phases"][1] == {"name": "second", "start": 1.0, "seconds": 0.5, "compile_seconds": 0.25}
    assert "start-up phase first:" in caplog.text
    phases.running()
    assert phases.snapshot()["seconds"] == pytest.approx(phases.now(), abs=0.5)


def test_stages_load_one_at_a_time_http_first(capture: CaptureSet) -> None:
    order: list[str] = []
    gate = threading.Event()
    use(capture, FakeStage("http", order, gate=gate), FakeStage("tcp", order))
    capture.start()
    assert capture.readiness(pipeline_running=True) == "failed: loading BPF programs"
    gate.set()
    assert capture.wait(5)
    assert order == ["http", "tcp"] and not FakeStage.overlapped
    assert capture.readiness(pipeline_running=False) == "failed: starting the pipeline"
    assert capture.readiness(pipeline_running=True) == "ok"
    names = [p["name"] for p in capture.phases.snapshot()["phases"]]
    assert names == ["btf", "http_bpf", "tcp_bpf"]


def test_load_error_stops_the_sequence_and_is_reported(capture: CaptureSet) -> None:
    order: list[str] = []
    use(capture, FakeStage("http", order, fail=LoadError("http.bpf.c: verifier said no")), FakeStage("tcp", order))
    capture.start()
    assert capture.wait(5)
    assert order == ["http"]
    assert capture.error == "http.bpf.c: verifier said no"
    assert capture.readiness(pipeline_running=True) == "failed: http.bpf.c: verifier said no"


def test_unexpected_exception_reaches_the_agent(capture: CaptureSet) -> None:
    use(capture, FakeStage("http", [], fail=RuntimeError("boom")), None)
    capture.start()
    assert capture.wait(5)
    assert capture.error == "RuntimeError: boom"


def test_cancel_waits_for_the_running_load_and_skips_the_rest(capture: CaptureSet) -> None:
    order: list[str] = []
    gate = threading.Event()
    use(capture, FakeStage("http", order, gate=gate), FakeStage("tcp", order))
    capture.start()
    threading.Timer(0.1, gate.set).start()
    capture.cancel(timeout=5)  # returns only once the in-flight load is over
    assert capture.done.is_set() and order == ["http"]


def test_nothing_enabled_is_done_at_once_and_disabled() -> None:
    cfg = validate({"agent": {"ebpf": {"enabled": False}}}).agent.ebpf
    capture = CaptureSet(cfg, StartupPhases())
    capture.start()
    assert capture.done.is_set() and not capture.enabled
    assert capture.readiness(pipeline_running=False) == "disabled"
