"""Jittered exponential backoff shared by the watchers (0.8 s doubling to 30 s by default)."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial: float = 0.8, maximum: float = 30.0, jitter: float = 0.2) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the following one up to maximum."""
        base = self._next
        self._next = min(self._next * 2, self.maximum)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self._next = self.initial
