"""Keep the agent inside its CPU budget by shedding span work in the kernel.

Under saturation no per-request Python work keeps up, so the processing thread's CPU is
measured each period and the kernel's shed rate (permille of exchanges not emitted) moves
to hold it under the budget: multiplicative increase when over, gentle decrease when under.
Counts stay exact in kernel counters and RED histograms are weighted by the rate.
"""

from __future__ import annotations


class ShedController:
    def __init__(self, budget_cores: float) -> None:
        self.budget = budget_cores
        self.shed_permille = 0

    def update(self, cpu_seconds: float, wall_seconds: float) -> int:
        if wall_seconds <= 0:
            return self.shed_permille
        used = cpu_seconds / wall_seconds
        keep = 1000 - self.shed_permille
        if used > self.budget:
            # scale the kept share by how far over budget we are, at least 10 % less
            keep = int(keep * min(0.9, self.budget / used))
        elif used < 0.7 * self.budget and self.shed_permille:
            keep = min(1000, int(keep * 1.25) + 10)
        self.shed_permille = max(0, min(990, 1000 - keep))
        return self.shed_permille
