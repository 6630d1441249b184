"""telegen.logs.RepeatFilter, telegen.timefmt and telegen.clock."""

from __future__ import annotations

import logging
import time

import pytest

from telegen import clock, logs, timefmt
from telegen.clock import MonotonicToWall
from telegen.logs import RepeatFilter


class _FakeTime:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def _record(msg: str, level: int = logging.ERROR, name: str = "telegen.x", args: tuple[object, ...] = ()) \
        -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    fake = _FakeTime()
    monkeypatch.setattr(logs.time, "monotonic", fake.monotonic)
    return fake


def test_repeat_filter_lets_burst_through_then_suppresses(fake_time: _FakeTime) -> None:
    f = RepeatFilter(burst=3, window=60)
    passed = [f.filter(_record("export failed: %s", args=(i,))) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.suppressed == 7


def test_repeat_filter_window_resets(fake_time: _FakeTime) -> None:
    f = RepeatFilter(burst=2, window=10)
    assert [f.filter(_record("boom")) for _ in range(3)] == [True, True, False]
    fake_time.now += 10.5
    assert [f.filter(_record("boom")) for _ in range(3)] == [True, True, False]


def test_repeat_filter_keys_by_logger_and_template(fake_time: _FakeTime) -> None:
    f = RepeatFilter(burst=1, window=60)
    assert f.filter(_record("a"))
    assert f.filter(_record("b"))
    assert f.filter(_record("a", name="telegen.other"))
    assert not f.filter(_record("a"))


def test_repeat_filter_never_limits_below_warning(fake_time: _FakeTime) -> None:
    f = RepeatFilter(burst=1, window=60)
    assert all(f.filter(_record("chatty", level=logging.INFO)) for _ in range(50))
    assert f.suppressed == 0


def test_setup_installs_one_stderr_handler_with_the_filter() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        repeat = logs.setup("warning")
        assert root.level == logging.WARNING
        assert len(root.handlers) == 1
        assert repeat in root.handlers[0].filters
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.parametrize(("ts", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (1_700_000_000.9, "2023-11-14T22:13:20Z"),
    (None, None),
])
def test_rfc3339(ts: float | None, text: str | None) -> None:
    assert timefmt.rfc3339(ts) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59.9, "59s"), (60, "1m0s"), (3599, "59m59s"), (3600, "1h0m0s"),
    (24 * 3600 + 15 * 60 + 30, "24h15m30s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert timefmt.go_duration(seconds) == text


def test_monotonic_to_wall_offset_matches_clocks() -> None:
    conv = MonotonicToWall()
    expected = time.time_ns() - time.monotonic_ns()
    assert abs(conv.offset() - expected) < 50_000_000  # 50 ms


def test_monotonic_to_wall_refreshes_after_period(monkeypatch: pytest.MonkeyPatch) -> None:
    mono = {"ns": 5_000_000_000}
    wall = {"ns": 1_700_000_000_000_000_000}
    monkeypatch.setattr(clock.time, "monotonic_ns", lambda: mono["ns"])
    monkeypatch.setattr(clock.time, "monotonic", lambda: mono["ns"] / 1e9)
    monkeypatch.setattr(clock.time, "time_ns", lambda: wall["ns"])
    conv = MonotonicToWall(refresh_seconds=60)
    assert conv.offset() == wall["ns"] - mono["ns"]
    wall["ns"] += 2_000_000_000  # the wall clock steps by 2 s
    mono["ns"] += 30_000_000_000
    assert conv.offset() == 1_700_000_000_000_000_000 - 5_000_000_000  # not refreshed yet
    mono["ns"] += 31_000_000_000
    assert conv.offset() == wall["ns"] - mono["ns"]
