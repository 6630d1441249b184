"""The HTTP benchmark's own arithmetic: which OFF runs an ON run is compared with, and when the
agent counts as drained. The numbers in the README come from these."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "http_overhead.py"


@pytest.fixture(scope="module")
def ho() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_overhead_under_test", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(rps: float, softirq_us: float) -> dict[str, Any]:
    return {"load": {"rps": rps}, "host": {"softirq_us_per_req": softirq_us}}


def test_an_on_run_is_compared_with_the_off_runs_at_its_own_speed(ho: ModuleType) -> None:
    off = [run(190_000, 2.2), run(115_000, 5.3), run(117_000, 5.1), run(194_000, 2.1), run(116_000, 5.5)]
    on = [run(111_000, 5.2), run(180_000, 2.15), run(150_000, 3.6)]  # slow, fast, mixed
    got = ho.phase_matched_ratios(off, on)
    slow, fast = got["each"]
    assert slow == {"softirq_us_per_req": 5.2, "off_runs": 3, "ratio": round(111_000 / 116_000, 3)}
    assert fast == {"softirq_us_per_req": 2.15, "off_runs": 2, "ratio": round(180_000 / 192_000, 3)}
    assert got["left_out"] == 1  # the speed changed during it: no OFF run matches
    assert got["median"] == round((slow["ratio"] + fast["ratio"]) / 2, 3)


def test_a_bracket_of_two_fast_off_runs_lets_a_slow_on_run_through_where_phases_do_not(ho: ModuleType) -> None:
    off = [run(196_000, 2.2), run(194_000, 2.1)]
    on = [run(118_000, 5.3)]
    assert ho.bracketed_ratios(off, on, "rps")["each"] == [round(118_000 / 195_000, 3)]
    assert ho.phase_matched_ratios(off, on) == {"each": [], "median": None, "left_out": 1}
    # a run that read no softirq time at all matches nothing, and does not divide by it
    assert ho.phase_matched_ratios(off, [run(118_000, 0.0)])["left_out"] == 1


def test_host_phase_is_kernel_time_per_request(ho: ModuleType) -> None:
    before = dict.fromkeys(("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), 0)
    tick_us = 1e6 / ho.CLK_TCK
    after = {**before, "softirq": 50, "system": 80}
    got = ho.host_phase(before, after, requests=1000)
    assert got == {"softirq_us_per_req": round(50 * tick_us / 1000, 2),
                   "system_us_per_req": round(80 * tick_us / 1000, 2)}


def test_node_cpu_ticks_reads_proc_stat(ho: ModuleType) -> None:
    ticks = ho.node_cpu_ticks()
    assert set(ticks) == {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}
    assert ticks["idle"] > 0


class FakeAgent:
    """queues() answers from a script: (records waiting, traces produced, exported, dropped)."""

    def __init__(self, script: list[tuple[int, int, int, int]]) -> None:
        self.script = script
        self.polls = 0

    def queues(self) -> tuple[int | None, dict[str, int]]:
        waiting, produced, exported, dropped = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return waiting, {"produced": produced, "exported": exported, "dropped": dropped}

    def snapshot(self) -> dict[str, int]:
        return {"polls": self.polls}


def test_drained_once_what_was_offered_after_decode_is_exported(ho: ModuleType,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ho.time, "sleep", lambda _s: None)
    # records still waiting, then decoded with 1,000 spans offered; each poll adds two spans of its
    # own (the benchmark's HTTP calls), which must not hold the wait open
    agent = FakeAgent([(40, 900, 800, 0), (0, 1000, 800, 0), (0, 1002, 900, 0), (0, 1004, 990, 10),
                       (0, 1006, 996, 10)])
    assert ho.Agent.wait_drained(agent, timeout=5) == {"polls": 4}


def test_drain_gives_up_at_its_timeout(ho: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ho.time, "sleep", lambda _s: None)
    clock = iter(range(0, 1000))
    monkeypatch.setattr(ho.time, "monotonic", lambda: float(next(clock)))
    agent = FakeAgent([(5, 100, 0, 0)])  # never decoded
    ho.Agent.wait_drained(agent, timeout=10)
    assert 5 <= agent.polls <= 11
