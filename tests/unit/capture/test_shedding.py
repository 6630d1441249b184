"""telegen.capture.shedding.ShedController: holds span-pipeline CPU under the budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.capture.shedding import ShedController


def test_under_budget_sheds_nothing() -> None:
    c = ShedController(0.25)
    assert c.update(0.1, 1.0) == 0
    assert c.update(0.0, 1.0) == 0


def test_over_budget_sheds_more_each_period() -> None:
    c = ShedController(0.25)
    seen = [c.update(1.0, 1.0) for _ in range(5)]
    assert seen == [750, 938, 985, 990, 990]  # 4x over budget keeps a quarter, then capped at 990


def test_slightly_over_budget_sheds_at_least_ten_percent() -> None:
    c = ShedController(1.0)
    assert c.update(1.01, 1.0) == 100


def test_recovers_to_zero_when_under_budget() -> None:
    c = ShedController(0.25)
    for _ in range(20):
        c.update(2.0, 1.0)
    assert c.shed_permille == 990
    steps = 0
    while c.shed_permille and steps < 100:
        c.update(0.05, 1.0)
        steps += 1
    assert c.shed_permille == 0
    assert steps < 30


def test_near_budget_holds_the_rate() -> None:
    c = ShedController(1.0)
    held = c.update(2.0, 1.0)
    assert c.update(0.85, 1.0) == held  # between 70 % and 100 % of budget: no change


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
        assert 0 <= rate <= 990
        assert rate == c.shed_permille
