"""Keep the agent inside its CPU budget by shedding span work in the kernel.

No per-request Python work keeps up with a saturated node, so the agent's CPU (the whole
process: capture, processing, export) is measured each period and the kernel's shed rate
(permille of exchanges not emitted) moves to hold it under the budget: multiplicative
increase when over (for two periods, or by a quarter at once), a decrease proportional to the
room left when under. Counts stay exact
in kernel counters and RED histograms are weighted by the rate.

Between those periods a feed-forward step watches records arriving: at the agent's measured
cost per record, a flood that would take it well over its budget is cut at once. A one-second
feedback alone let a saturating load run unshed for a whole period (wrk on 2 cores: 200k
records a second, a full ring buffer in 40 ms, and 1-2 s of backlog to work off).

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
# Between HOLD_SHARE and 100 % of the budget the shed rate holds; under it, the kept share grows
# toward RECOVER_TARGET of the budget. (A fixed step back from a 10 % overshoot left the agent
# at 65 % of its budget, shedding spans it had the CPU for.)
HOLD_SHARE = 0.9
RECOVER_TARGET = 0.95
# Periodic work (the metrics export every 15 s, a sweep, a collection) lifts one period's CPU
# a little: that alone sheds nothing. Over the budget means the last two periods' mean is over
# it, or this period is over it by this factor (load arriving: shed at once).
SPIKE_FACTOR = 1.25
# What a record costs the whole agent (capture, processing, export) until it has measured its
# own, each period with enough records to tell. Live runs now learn 3-5 us (15-30 us when this
# was set); the default stays high because a load's onset comes before the first period, and
# an over-estimate cuts a flood harder, never softer.
DEFAULT_RECORD_COST_S = 20e-6
MIN_RECORDS_TO_LEARN = 500
# A flood is arrivals that would cost this many times the budget: a steady load near the budget
# is the feedback's to steer (arrivals come in drain-sized bursts, so a short window can read
# half as much again).
FLOOD_FACTOR = 2.0
# After a feed-forward cut, the records still in the ring buffer were drawn at the old rate:
# they must not count as a new flood. Arrivals are counted as the reader drains them (every
# 50 ms at most, sooner on the kernel's wakeups), so 0.1 s covers them; a longer settle kept
# the onset's first cut, made while the node still looked idle, for half a second (wrk: 35-37k
# records emitted in the first second instead of 9-15k).
ANTICIPATE_SETTLE_S = 0.1
# Feed-forward windows in a row that must read the node under SATURATED_IDLE before it counts
# as saturated now. One window is 0.1 s, 20 of the kernel's 10 ms ticks on 2 CPUs. When one was
# enough, a steady 5,000 req/s (0.1 cores at the default cost, 0.024 at a learned 4.7 us: either
# over twice the 0.01 floor) shed 64 % of its spans in a benchmark round on a node about 45 %
# idle, with no period reading it saturated. A second window delays an onset's cut by 0.1 s.
SATURATED_NOW_WINDOWS = 2


class NodeCpu:
    """The node's idle share between calls, from /proc/stat (steal time left out: not ours)."""

    def __init__(self, stat_path: Path = Path("/proc/stat")) -> None:
        self.path = stat_path
        self._last: tuple[int, int] | None = self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            with open(self.path, encoding="ascii") as fh:
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
        self.record_cost_s = DEFAULT_RECORD_COST_S
        self.flood_cuts = 0  # feed-forward cuts, for /status
        self._last_used = 0.0
        self._settle_until = 0.0
        self._busy_windows = 0  # feed-forward windows in a row under SATURATED_IDLE

    def _budget(self) -> float:
        return self.saturated_budget if self.saturated else self.budget

    def update(self, cpu_seconds: float, wall_seconds: float, node_idle: float | None = None,
               records: int = 0) -> int:
        """One feedback period: the agent used `cpu_seconds` in `wall_seconds` and worked off
        `records` (0: unknown, nothing learned)."""
        if wall_seconds <= 0:
            return self.shed_permille
        if records >= MIN_RECORDS_TO_LEARN and cpu_seconds > 0:
            self.record_cost_s = (self.record_cost_s + cpu_seconds / records) / 2
        self.saturated = node_idle is not None and node_idle < SATURATED_IDLE
        budget = self._budget()
        used = cpu_seconds / wall_seconds
        keep = 1000 - self.shed_permille
        sustained = (used + self._last_used) / 2
        self._last_used = used
        if used > budget and (sustained > budget or used > SPIKE_FACTOR * budget):
            # scale the kept share by how far over budget we are, at least 10 % less
            keep = int(keep * min(0.9, budget / used))
        elif used < HOLD_SHARE * budget and self.shed_permille:
            # grow toward the budget in proportion to the room left (span work is most of the
            # agent's CPU, so this lands just under it), by at most a quarter per period
            room = RECOVER_TARGET * budget / used if used > 0 else 2.0
            keep = min(1000, int(keep * min(1.25, room)) + 10)
        self.shed_permille = max(0, min(MAX_SHED_PERMILLE, 1000 - keep))
        return self.shed_permille

    def anticipate(self, records: int, wall_seconds: float, now: float, node_idle: float | None = None) -> int:
        """Feed-forward between periods: `records` arrived in `wall_seconds`, while the node had
        `node_idle` idle share (None: unknown). When working them off would take the agent more
        than FLOOD_FACTOR times its budget, the kept share drops at once to what the budget
        holds: the saturated floor when the node is saturated now (SATURATED_NOW_WINDOWS in a
        row), not only by the last period (a load's onset: a cut to the full budget let 20k
        records a second through until the period caught up). Only ever sheds more; update()
        recovers."""
        if wall_seconds <= 0:
            return self.shed_permille
        busy = node_idle is not None and node_idle < SATURATED_IDLE
        self._busy_windows = self._busy_windows + 1 if busy else 0
        if records <= 0 or now < self._settle_until:
            return self.shed_permille
        saturated_now = self._busy_windows >= SATURATED_NOW_WINDOWS
        budget = self.saturated_budget if saturated_now else self._budget()
        predicted = records / wall_seconds * self.record_cost_s
        if predicted > FLOOD_FACTOR * budget:
            keep = int((1000 - self.shed_permille) * RECOVER_TARGET * budget / predicted)
            self.shed_permille = max(self.shed_permille, min(MAX_SHED_PERMILLE, 1000 - keep))
            self.flood_cuts += 1
            self._settle_until = now + ANTICIPATE_SETTLE_S
        return self.shed_permille

    def status(self) -> dict[str, float | int | bool]:
        return {"budget_cores": self._budget(), "saturated": self.saturated,
                "record_cost_us": round(self.record_cost_s * 1e6, 1), "flood_cuts": self.flood_cuts}
