"""telegen.capture.shedding: holds the agent's CPU under its budget, and under a floor on a saturated node."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.capture.shedding import ANTICIPATE_SETTLE_S, MAX_SHED_PERMILLE, NodeCpu, ShedController


def test_under_budget_sheds_nothing() -> None:
    c = ShedController(0.25)
    assert c.update(0.1, 1.0) == 0
    assert c.update(0.0, 1.0) == 0


def test_over_budget_sheds_more_each_period() -> None:
    c = ShedController(0.25)
    seen = [c.update(1.0, 1.0) for _ in range(5)]
    assert seen == [750, 938, 985, 997, 999]  # 4x over budget keeps a quarter, then capped at 999


def test_slightly_over_budget_sheds_at_least_ten_percent() -> None:
    c = ShedController(1.0)
    c.update(1.01, 1.0)
    assert c.update(1.01, 1.0) == 100


def test_one_period_a_little_over_budget_sheds_nothing() -> None:
    """The metrics export every 15 s lifts one period's CPU: no spans are shed for it."""
    c = ShedController(0.25)
    seen = [c.update(cpu, 1.0) for cpu in (0.2, 0.2, 0.29, 0.2, 0.2, 0.29, 0.2)]
    assert seen == [0] * 7
    assert c.update(0.27, 1.0) == 0 and c.update(0.27, 1.0) > 0  # sustained: shed
    assert ShedController(0.25).update(0.32, 1.0) > 0  # a quarter over at once: shed now


def test_recovers_to_zero_when_under_budget() -> None:
    c = ShedController(0.25)
    for _ in range(20):
        c.update(2.0, 1.0)
    assert c.shed_permille == MAX_SHED_PERMILLE
    steps = 0
    while c.shed_permille and steps < 100:
        c.update(0.05, 1.0)
        steps += 1
    assert c.shed_permille == 0
    assert steps < 30


def test_near_budget_holds_the_rate() -> None:
    c = ShedController(1.0)
    held = c.update(2.0, 1.0)
    assert c.update(0.95, 1.0) == held  # between 90 % and 100 % of budget: no change


def test_recovery_lands_just_under_the_budget() -> None:
    """Span work scales with the kept share: the controller settles near the budget, not far below it."""
    c = ShedController(0.25)
    per_full_rate, fixed = 0.30, 0.02  # what the agent would use shedding nothing, and its floor
    for _ in range(60):
        c.update(fixed + per_full_rate * (1000 - c.shed_permille) / 1000, 1.0)
    used = fixed + per_full_rate * (1000 - c.shed_permille) / 1000
    assert 0.8 * 0.25 <= used <= 0.25
    assert c.shed_permille < 300


def test_zero_wall_time_changes_nothing() -> None:
    c = ShedController(0.25)
    c.update(1.0, 1.0)
    before = c.shed_permille
    assert c.update(5.0, 0.0) == before
    assert c.update(5.0, -1.0) == before


@settings(derandomize=True, max_examples=300, deadline=None)
@given(budget=st.floats(0.01, 8), samples=st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), max_size=40))
def test_rate_always_bounded(budget: float, samples: list[tuple[float, float]]) -> None:
    c = ShedController(budget)
    for cpu, wall in samples:
        rate = c.update(cpu, wall)
        assert 0 <= rate <= MAX_SHED_PERMILLE
        assert rate == c.shed_permille


def test_saturated_node_holds_the_agent_to_the_floor() -> None:
    c = ShedController(0.25, saturated_budget_cores=0.03)
    assert c.update(0.2, 1.0, node_idle=0.5) == 0  # spare CPU: the full budget applies
    assert c.update(0.2, 1.0, node_idle=0.01) > 0  # no idle CPU: 0.2 cores is over the floor
    assert c.saturated


def test_saturated_budget_never_exceeds_the_budget() -> None:
    assert ShedController(0.1, saturated_budget_cores=5.0).saturated_budget == 0.1


def test_unknown_node_idle_uses_the_full_budget() -> None:
    c = ShedController(0.25, saturated_budget_cores=0.01)
    assert c.update(0.2, 1.0, node_idle=None) == 0
    assert not c.saturated


def _stat(path: Path, user: int, idle: int, steal: int = 0) -> None:
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")


def test_node_cpu_idle_share_between_reads(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, 100, 100)
    node = NodeCpu(stat)
    _stat(stat, 190, 110, steal=500)  # 90 busy, 10 idle; steal is the hypervisor's, not counted
    assert node.idle_share() == 0.1
    assert node.idle_share() is None  # no time passed


def test_node_cpu_unreadable_or_malformed_is_none(tmp_path: Path) -> None:
    assert NodeCpu(tmp_path / "missing").idle_share() is None
    bad = tmp_path / "stat"
    bad.write_text("garbage\n")
    assert NodeCpu(bad).idle_share() is None


def test_a_flood_is_cut_before_the_first_period_ends() -> None:
    """200k records a second at the default 20 us each would take 4 cores: the kept share drops
    at once to what 95 % of the budget holds, without waiting a period of backlog."""
    c = ShedController(0.25)
    assert c.anticipate(50_000, 0.25, now=0.0) == 1000 - int(1000 * 0.95 * 0.25 / 4.0)
    assert c.status()["flood_cuts"] == 1


def test_a_flood_on_a_node_saturated_now_is_cut_to_the_floor() -> None:
    """The node's idle share over the same window: a load's onset saturates it before any
    period has said so, and the cut goes straight to the saturated floor."""
    c = ShedController(0.25, 0.03)
    assert c.anticipate(50_000, 0.25, now=0.0, node_idle=0.6) == 1000 - int(1000 * 0.95 * 0.25 / 4.0)
    c = ShedController(0.25, 0.03)
    c.anticipate(0, 0.1, now=0.0, node_idle=0.1)  # the onset's first busy window
    assert c.anticipate(50_000, 0.25, now=0.1, node_idle=0.1) == 1000 - int(1000 * 0.95 * 0.03 / 4.0)
    assert c.status()["saturated"] is False  # the period, not one window, says what the node is


def test_one_busy_window_does_not_make_a_steady_load_a_flood() -> None:
    """5,000 records a second at 4.7 us is 0.024 cores: over twice a 0.01 floor, far under the
    budget. One 0.1 s window that reads the node busy is no reason to cut it; a second in a row
    is, and so is a period that reads the node saturated."""
    c = ShedController(0.25, 0.01)
    c.record_cost_s = 4.7e-6
    assert c.anticipate(500, 0.1, now=0.0, node_idle=0.1) == 0
    assert c.anticipate(500, 0.1, now=0.1, node_idle=0.45) == 0  # the node had idle time again
    assert c.anticipate(500, 0.1, now=0.2, node_idle=0.1) == 0
    assert c.status()["flood_cuts"] == 0
    assert c.anticipate(500, 0.1, now=0.3, node_idle=0.1) > 0
    assert c.status()["flood_cuts"] == 1
    c = ShedController(0.25, 0.01)
    c.record_cost_s = 4.7e-6
    c.update(0.005, 1.0, node_idle=0.1, records=1_000)
    assert c.anticipate(500, 0.1, now=2.0, node_idle=0.45) > 0  # the period said so


def test_windows_without_arrivals_still_count_toward_a_busy_node() -> None:
    c = ShedController(0.25, 0.01)
    c.record_cost_s = 4.7e-6
    assert c.anticipate(0, 0.1, now=0.0, node_idle=0.1) == 0
    assert c.anticipate(500, 0.1, now=0.1, node_idle=0.1) > 0


def test_steady_load_near_the_budget_is_left_to_the_feedback() -> None:
    c = ShedController(0.25)
    assert c.anticipate(2_500, 0.25, now=0.0) == 0  # 10k records/s: 0.2 cores
    assert c.anticipate(3_750, 0.25, now=1.0) == 0  # the same load read in a drain-sized burst
    assert c.status()["flood_cuts"] == 0


def test_records_drawn_before_a_cut_do_not_cut_again() -> None:
    c = ShedController(0.25)
    first = c.anticipate(50_000, 0.25, now=0.0)
    assert c.anticipate(10_000, 0.05, now=ANTICIPATE_SETTLE_S / 2) == first  # in flight from before the cut
    assert c.anticipate(10_000, 0.05, now=ANTICIPATE_SETTLE_S) > first  # the flood goes on at the new rate


def test_anticipation_never_sheds_less() -> None:
    c = ShedController(0.25)
    for _ in range(3):
        c.update(2.0, 1.0)
    held = c.shed_permille
    assert c.anticipate(10, 0.25, now=0.0) == held
    assert c.anticipate(0, 0.25, now=1.0) == held
    assert c.anticipate(10, 0.0, now=2.0) == held


def test_the_cost_per_record_is_learned_from_each_period() -> None:
    c = ShedController(0.25)
    c.update(0.05, 1.0, records=100)  # too few records to tell
    assert c.status()["record_cost_us"] == 20.0
    c.update(0.2, 1.0, records=20_000)  # 10 us a record, averaged with what was known
    assert c.status()["record_cost_us"] == 15.0
    # a cheaper agent takes a larger flood before cutting
    assert c.anticipate(8_000, 0.25, now=0.0) == 0  # 32k records/s at 15 us: 0.48 cores


def test_status_names_the_budget_in_force() -> None:
    c = ShedController(0.25, saturated_budget_cores=0.03)
    assert c.status() == {"budget_cores": 0.25, "saturated": False, "record_cost_us": 20.0, "flood_cuts": 0}
    c.update(0.01, 1.0, node_idle=0.0)
    assert c.status()["budget_cores"] == 0.03 and c.status()["saturated"] is True
