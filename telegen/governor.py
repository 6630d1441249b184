"""The cost governor: one light thread that keeps the agent's CPU inside its budget.

Every 0.1 s, or as soon as a surge of records has arrived, it prices them (feed-forward: a
flood is cut at once); every second it compares the agent's CPU (the whole process) with its
budget and the node's idle share and moves the kernel's shed rate (telegen.capture.shedding).
Once a backlog of records has been worked off, it hands the memory it left free back to the
kernel (telegen.memory).

It runs apart from the processing thread, so the steering keeps its cadence whatever the
processing thread is doing (a large batch, or yielding the CPU to the workloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from telegen.capture.shedding import NodeCpu, ShedController
from telegen.memory import release_free_memory
from telegen.pipeline import BoundedQueue
from telegen.threads import NamedThread

log = logging.getLogger(__name__)

# How often arrivals are checked against the budget between the one-second CPU periods. At
# 0.25 s, wrk's onset left 34k records to thin; at 0.1 s, 9k. Arrivals come in drains (50 ms
# timer or kernel wakeups), so a window can read 1.5x a steady rate: FLOOD_FACTOR covers it.
ANTICIPATE_EVERY_S = 0.1
# Sooner when this many records arrive (the reader's queue calls back): wrk's onset brings 200k
# records a second, so the 0.1 s timer alone let about 20k through at the old rate, each worked
# off at full cost. The rate is then read over at least SURGE_MIN_WINDOW_S: one drain can bring
# 50 ms of records at once, which a shorter window would take for a far higher rate.
SURGE_RECORDS = 2048
SURGE_MIN_WINDOW_S = 0.02
PERIOD_S = 1.0
# A backlog this deep (records waiting at once: 2.6 MiB and more) is worth a malloc_trim once
# worked off (fewer than an eighth of it waiting), at most every TRIM_MIN_INTERVAL_S.
TRIM_AFTER_BACKLOG = 4096
TRIM_MIN_INTERVAL_S = 10.0


class CostGovernor:
    thread_name = "telegen-governor"

    def __init__(self, records: BoundedQueue[bytes], set_shed: Callable[[int], None] | None,
                 controller: ShedController, node_cpu: NodeCpu | None = None,
                 cpu_seconds: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic,
                 release_memory: Callable[[], int | None] = release_free_memory) -> None:
        self.records = records
        self.controller = controller
        self._set_shed = set_shed
        self._node_cpu = node_cpu or NodeCpu()
        self._node_cpu_now = NodeCpu(self._node_cpu.path)  # over each feed-forward window
        self._cpu_seconds = cpu_seconds
        self._clock = clock
        self._release_memory = release_memory
        self._backlog = 0  # deepest records backlog since the last trim
        self._next_trim = 0.0
        self.memory_released_bytes = 0
        # Set by the agent once every stage has started: the compile's CPU must not count.
        self.armed = threading.Event()
        self._stop = threading.Event()
        self._surge = threading.Event()
        records.notify_every(SURGE_RECORDS, self._surge.set)
        self._thread: threading.Thread | None = None
        self._restart_windows(self._clock())

    def _restart_windows(self, now: float) -> None:
        self._window_cpu, self._window_wall, self._window_taken = self._cpu_seconds(), now, self.records.taken
        self._arrived, self._arrived_wall = self.records.produced, now

    def start(self) -> None:
        self._thread = NamedThread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._surge.wait(ANTICIPATE_EVERY_S):
                self._surge.clear()
                self._stop.wait(max(0.0, SURGE_MIN_WINDOW_S - (self._clock() - self._arrived_wall)))
            if self._stop.is_set():
                break
            try:
                self.tick()
            except Exception:  # never let a bad reading stop the steering for good
                log.exception("cost governor tick failed")

    def tick(self) -> None:
        """One step: the feed-forward check each call, the feedback period once a second."""
        now = self._clock()
        if not self.armed.is_set():  # start-up (BPF compiles) is not span work
            self._restart_windows(now)
            return
        window, arrived = now - self._arrived_wall, self.records.produced - self._arrived
        if window >= ANTICIPATE_EVERY_S or (arrived >= SURGE_RECORDS and window >= SURGE_MIN_WINDOW_S):
            before = self.controller.shed_permille
            shed = self.controller.anticipate(arrived, window, now, self._node_cpu_now.idle_share())
            if shed != before and self._set_shed:
                self._set_shed(shed)
            self._arrived, self._arrived_wall = self.records.produced, now
        self._trim_after_backlog(now)
        if now - self._window_wall >= PERIOD_S:
            cpu, was_saturated = self._cpu_seconds(), self.controller.saturated
            shed = self.controller.update(cpu - self._window_cpu, now - self._window_wall,
                                          self._node_cpu.idle_share(),
                                          records=self.records.taken - self._window_taken)
            saturated = self.controller.saturated
            if saturated != was_saturated:
                log.info("node CPU %s: agent budget now %.2f cores (shedding %d permille of spans)",
                         "saturated" if saturated else "has idle time again",
                         self.controller.saturated_budget if saturated else self.controller.budget, shed)
            if self._set_shed:
                self._set_shed(shed)
            self._window_cpu, self._window_wall, self._window_taken = cpu, now, self.records.taken

    def _trim_after_backlog(self, now: float) -> None:
        self._backlog = max(self._backlog, self.records.take_deepest())
        if (self._backlog < TRIM_AFTER_BACKLOG or len(self.records) >= TRIM_AFTER_BACKLOG // 8
                or now < self._next_trim):
            return
        released = self._release_memory()
        self._backlog, self._next_trim = 0, now + TRIM_MIN_INTERVAL_S
        if released:
            self.memory_released_bytes += released
            log.debug("returned %.1f MiB to the kernel after a backlog", released / 2**20)

    def healthy(self) -> tuple[bool, str]:
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return False, "cost governor thread died"
        return True, ""

    def status(self) -> dict[str, float | int | bool]:
        return self.controller.status()
