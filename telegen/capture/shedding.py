"""Keep the agent inside its CPU budget by shedding span work in the kernel.

No per-request Python work keeps up with a saturated node, so the agent's CPU (the whole
process: capture, processing, export) is measured each period and the kernel's shed rate
(permille of exchanges not emitted) moves to hold it under the budget: multiplicative
increase when over, gentle decrease when under. Counts stay exact in kernel counters and
RED histograms are weighted by the rate.

The budget shrinks while the node has (almost) no idle CPU: then every cycle the agent
spends is taken from the workloads, so it keeps only a floor (`cpu_budget_saturated`).
"""

from __future__ import annotations

from pathlib import Path

MAX_SHED_PERMILLE = 999  # never all: a trickle of spans keeps showing what the node serves
# Node idle share under which the node counts as saturated. Closed-loop load on loopback never
# reaches 0 % idle (client and server wait on each other): wrk against nginx on 2 cores left
# 10-15 % idle, while an open-loop 5,000 req/s left far more.
SATURATED_IDLE = 0.25


class NodeCpu:
    """The node's idle share between calls, from /proc/stat (steal time left out: not ours)."""

    def __init__(self, stat_path: Path = Path("/proc/stat")) -> None:
        self._path = stat_path
        self._last: tuple[int, int] | None = self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            with open(self._path, encoding="ascii") as fh:
                fields = fh.readline().split()
        except OSError:
            return None
        if len(fields) < 9 or fields[0] != "cpu":
            return None
        user, nice, system, idle, iowait, irq, softirq, _steal = (int(v) for v in fields[1:9])
        return user + nice + system + idle + iowait + irq + softirq, idle + iowait

    def idle_share(self) -> float | None:
        """Idle share of all CPUs since the previous call; None when /proc/stat is unreadable."""
        now, last = self._read(), self._last
        self._last = now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return (now[1] - last[1]) / (now[0] - last[0])


class ShedController:
    def __init__(self, budget_cores: float, saturated_budget_cores: float | None = None) -> None:
        self.budget = budget_cores
        self.saturated_budget = min(budget_cores, saturated_budget_cores if saturated_budget_cores is not None
                                    else budget_cores)
        self.shed_permille = 0
        self.saturated = False

    def update(self, cpu_seconds: float, wall_seconds: float, node_idle: float | None = None) -> int:
        if wall_seconds <= 0:
            return self.shed_permille
        self.saturated = node_idle is not None and node_idle < SATURATED_IDLE
        budget = self.saturated_budget if self.saturated else self.budget
        used = cpu_seconds / wall_seconds
        keep = 1000 - self.shed_permille
        if used > budget:
            # scale the kept share by how far over budget we are, at least 10 % less
            keep = int(keep * min(0.9, budget / used))
        elif used < 0.7 * budget and self.shed_permille:
            keep = min(1000, int(keep * 1.25) + 10)
        self.shed_permille = max(0, min(MAX_SHED_PERMILLE, 1000 - keep))
        return self.shed_permille
