"""telegen.governor: steers the kernel's shed rate from one light thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from telegen.capture.shedding import NodeCpu, ShedController
from telegen.governor import SURGE_MIN_WINDOW_S, SURGE_RECORDS, TRIM_AFTER_BACKLOG, CostGovernor
from telegen.pipeline import BoundedQueue


class Machine:
    """A clock, the agent's CPU seconds and the node's /proc/stat, all moved by the test."""

    def __init__(self, stat: Path) -> None:
        self.now = 100.0
        self.cpu = 0.0
        self.stat = stat
        self.busy = self.idle = 0
        self.write_stat()

    def write_stat(self) -> None:
        self.stat.write_text(f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 0 0 0\n")

    def advance(self, seconds: float, agent_cores: float, node_idle_share: float) -> None:
        self.now += seconds
        self.cpu += seconds * agent_cores
        ticks = int(seconds * 200)  # 2 CPUs at 100 ticks a second
        self.idle += int(ticks * node_idle_share)
        self.busy += ticks - int(ticks * node_idle_share)
        self.write_stat()


def _governor(tmp_path: Path, shed: list[int], trims: list[float] | None = None
              ) -> tuple[CostGovernor, Machine, BoundedQueue[bytes]]:
    machine = Machine(tmp_path / "stat")
    records: BoundedQueue[bytes] = BoundedQueue("records", 1_000_000)

    def release() -> int:
        if trims is not None:
            trims.append(machine.now)
        return 3 << 20

    governor = CostGovernor(records, shed.append, ShedController(0.25, 0.03), NodeCpu(machine.stat),
                            cpu_seconds=lambda: machine.cpu, clock=lambda: machine.now, release_memory=release)
    return governor, machine, records


def _take_all(records: BoundedQueue[bytes]) -> None:
    while records.get_batch(100_000):
        pass


def test_nothing_is_steered_before_the_agent_arms_it(tmp_path: Path) -> None:
    shed: list[int] = []
    governor, machine, records = _governor(tmp_path, shed)
    records.put_many([b"r"] * 100_000)  # the start-up's records and CPU are not span work
    machine.advance(2.0, agent_cores=1.5, node_idle_share=0.9)
    governor.tick()
    assert shed == [] and governor.controller.shed_permille == 0


def test_a_flood_is_cut_on_the_next_check(tmp_path: Path) -> None:
    shed: list[int] = []
    governor, machine, records = _governor(tmp_path, shed)
    governor.armed.set()
    governor.tick()
    records.put_many([b"r"] * 50_000)  # 200k records/s at 20 us: 4 cores against 0.25
    machine.advance(0.25, agent_cores=0.1, node_idle_share=0.9)
    governor.tick()
    assert shed and 900 < shed[-1] < 990  # to the full budget: the node had idle time
    assert governor.status()["flood_cuts"] == 1


def test_a_flood_on_a_saturated_node_is_cut_to_the_floor_on_its_second_busy_window(tmp_path: Path) -> None:
    shed: list[int] = []
    governor, machine, records = _governor(tmp_path, shed)
    governor.armed.set()
    governor.tick()
    records.put_many([b"r"] * 50_000)
    machine.advance(0.25, agent_cores=0.1, node_idle_share=0.1)
    governor.tick()
    assert shed and 900 < shed[-1] < 990  # one busy window: cut to the full budget
    records.put_many([b"r"] * 5_000)  # the flood goes on at the kept rate
    machine.advance(0.25, agent_cores=0.1, node_idle_share=0.1)
    governor.tick()
    assert shed[-1] >= 990 and governor.status()["flood_cuts"] == 2


def test_a_surge_is_priced_before_the_timer_over_a_window_long_enough_to_read_its_rate(tmp_path: Path) -> None:
    shed: list[int] = []
    governor, machine, records = _governor(tmp_path, shed)
    governor.armed.set()
    governor.tick()
    records.put_many([b"r"] * SURGE_RECORDS)  # one drain's worth: too short a window to tell a rate
    machine.advance(SURGE_MIN_WINDOW_S / 4, agent_cores=0.1, node_idle_share=0.9)
    governor.tick()
    assert shed == []
    records.put_many([b"r"] * SURGE_RECORDS)  # 4,096 records in 25 ms: 160k a second
    machine.advance(SURGE_MIN_WINDOW_S, agent_cores=0.1, node_idle_share=0.9)
    governor.tick()
    assert shed and shed[-1] > 900 and governor.status()["flood_cuts"] == 1


def test_a_surge_wakes_the_governor_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    governor, _machine, records = _governor(tmp_path, [])
    ticks = threading.Semaphore(0)
    monkeypatch.setattr(governor, "tick", ticks.release)
    monkeypatch.setattr("telegen.governor.ANTICIPATE_EVERY_S", 30.0)  # only a surge can wake it
    governor.start()
    try:
        records.put_many([b"r"] * (SURGE_RECORDS - 1))
        assert not ticks.acquire(timeout=0.3)
        records.put_many([b"r"])
        assert ticks.acquire(timeout=2)
    finally:
        governor.stop(2.0)


def test_the_period_moves_the_rate_and_the_budget_with_the_node(tmp_path: Path) -> None:
    shed: list[int] = []
    governor, machine, records = _governor(tmp_path, shed)
    governor.armed.set()
    governor.tick()
    for _ in range(4):
        records.put_many([b"r"] * 1_250)
        _take_all(records)
        machine.advance(0.25, agent_cores=0.05, node_idle_share=0.7)
        governor.tick()
    assert shed == [0]  # within budget: nothing shed, the period still publishes the rate
    assert governor.status()["record_cost_us"] == 15.0  # (20 + 0.05 s / 5,000 records) / 2
    for _ in range(4):
        machine.advance(0.25, agent_cores=0.05, node_idle_share=0.1)  # saturated: the floor applies
        governor.tick()
    status = governor.status()
    assert status["saturated"] is True and status["budget_cores"] == 0.03
    assert shed[-1] > 0  # 0.05 cores against the 0.03 floor


def test_memory_goes_back_once_a_backlog_is_worked_off_at_most_every_ten_seconds(tmp_path: Path) -> None:
    trims: list[float] = []
    governor, machine, records = _governor(tmp_path, [], trims)
    governor.armed.set()
    records.put_many([b"r"] * (TRIM_AFTER_BACKLOG - 1))  # short of a backlog
    _take_all(records)
    machine.advance(0.25, agent_cores=0.01, node_idle_share=0.9)
    governor.tick()
    assert trims == []
    records.put_many([b"r"] * (2 * TRIM_AFTER_BACKLOG))  # a backlog, still waiting: nothing yet
    machine.advance(0.25, agent_cores=0.01, node_idle_share=0.9)
    governor.tick()
    assert trims == []
    _take_all(records)  # worked off between two ticks (the depth is remembered, not sampled)
    machine.advance(0.25, agent_cores=0.01, node_idle_share=0.9)
    governor.tick()
    assert trims == [machine.now] and governor.memory_released_bytes == 3 << 20
    first = machine.now
    for _ in range(3):  # more backlogs within ten seconds: one trim covers them
        records.put_many([b"r"] * (2 * TRIM_AFTER_BACKLOG))
        _take_all(records)
        machine.advance(2.0, agent_cores=0.01, node_idle_share=0.9)
        governor.tick()
    assert trims == [first]
    machine.advance(5.0, agent_cores=0.01, node_idle_share=0.9)
    governor.tick()
    assert trims == [first, machine.now]  # the backlog seen meanwhile, trimmed when allowed
    machine.advance(15.0, agent_cores=0.01, node_idle_share=0.9)
    governor.tick()
    assert len(trims) == 2  # no backlog since: no trim


def test_a_failing_tick_does_not_stop_the_governor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    governor, _machine, _records = _governor(tmp_path, [])
    calls = threading.Semaphore(0)

    def broken() -> None:
        calls.release()
        raise RuntimeError("a bad reading")

    monkeypatch.setattr(governor, "tick", broken)
    monkeypatch.setattr("telegen.governor.ANTICIPATE_EVERY_S", 0.01)
    governor.start()
    try:
        assert calls.acquire(timeout=2) and calls.acquire(timeout=2)  # ticked again after the failure
        assert governor.healthy() == (True, "")
    finally:
        governor.stop(2.0)
