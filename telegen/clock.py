"""Kernel CLOCK_MONOTONIC nanoseconds to Unix epoch nanoseconds, via an offset refreshed periodically."""

from __future__ import annotations

import time


class MonotonicToWall:
    def __init__(self, refresh_seconds: float = 60.0) -> None:
        self._refresh = refresh_seconds
        self._offset = 0
        self._measured = 0.0
        self.refresh()

    def refresh(self) -> None:
        # Bracket the wall read with two monotonic reads and use their midpoint.
        m1 = time.monotonic_ns()
        wall = time.time_ns()
        m2 = time.monotonic_ns()
        self._offset = wall - (m1 + m2) // 2
        self._measured = time.monotonic()

    def offset(self) -> int:
        if time.monotonic() - self._measured > self._refresh:
            self.refresh()
        return self._offset
