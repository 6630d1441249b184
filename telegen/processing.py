"""The processing worker: raw records -> decode -> spans -> enrich -> RED + export, in batches.

One thread, as design.md section 5 puts it; it also measures the agent's CPU (the whole
process) and the node's idle share to steer the kernel's shed rate.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.red import RedMetrics
from telegen.assemble.span_groups import SpanGroups
from telegen.capture.shedding import NodeCpu, ShedController
from telegen.clock import MonotonicToWall
from telegen.decode.records import RecordDecoder
from telegen.pipeline import BoundedQueue, QueueWorker
from telegen.signals import SpanRecord

log = logging.getLogger(__name__)

BATCH = 4096
# How often arrivals are checked against the budget between the one-second CPU periods.
ANTICIPATE_EVERY_S = 0.25


class ProcessingWorker(QueueWorker):
    name = "processing"
    thread_name = "telegen-processing"

    def __init__(self, records: BoundedQueue[bytes], decoder: RecordDecoder, builder: HttpSpanBuilder,
                 red: RedMetrics, enrich: Callable[[list[SpanRecord]], None],
                 submit: Callable[[list[SpanRecord]], None], set_shed: Callable[[int], None] | None = None,
                 cpu_budget: float = 0.25, cpu_budget_saturated: float | None = None) -> None:
        super().__init__(records)
        self.decoder = decoder
        self.builder = builder
        self.red = red
        self._enrich = enrich
        self._submit = submit
        self._set_shed = set_shed
        self.shed = ShedController(cpu_budget, cpu_budget_saturated)
        self.node_cpu = NodeCpu()
        # Set by the agent once every stage has started: the compile's CPU must not count.
        self.budget_armed = threading.Event()
        self.clock = MonotonicToWall()
        self.spans_collected = 0
        # Called with each enriched batch, grouped (e.g. the service map); errors are the observer's own.
        self.span_observers: list[Callable[[SpanGroups], None]] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.error = ""

    def _run(self) -> None:
        window_cpu, window_wall, window_taken = time.process_time(), time.monotonic(), self.records.taken
        arrived, arrived_wall = self.records.produced, window_wall
        while not self._stop.is_set():
            batch = self.records.get_batch(BATCH, timeout=0.2)
            if batch:
                self.process(batch)
            now = time.monotonic()
            if not self.budget_armed.is_set():  # start-up (BPF compiles) is not span work
                window_cpu, window_wall, window_taken = time.process_time(), now, self.records.taken
                arrived, arrived_wall = self.records.produced, now
                continue
            if now - arrived_wall >= ANTICIPATE_EVERY_S:
                before = self.shed.shed_permille
                shed = self.shed.anticipate(self.records.produced - arrived, now - arrived_wall, now)
                if shed != before and self._set_shed:
                    self._set_shed(shed)
                arrived, arrived_wall = self.records.produced, now
            if now - window_wall >= 1.0:
                cpu, was_saturated = time.process_time(), self.shed.saturated
                shed = self.shed.update(cpu - window_cpu, now - window_wall, self.node_cpu.idle_share(),
                                        records=self.records.taken - window_taken)
                if self.shed.saturated != was_saturated:
                    log.info("node CPU %s: agent budget now %.2f cores (shedding %d permille of spans)",
                             "saturated" if self.shed.saturated else "has idle time again",
                             self.shed.saturated_budget if self.shed.saturated else self.shed.budget, shed)
                if self._set_shed:
                    self._set_shed(shed)
                window_cpu, window_wall, window_taken = cpu, now, self.records.taken
        # drain what is left so SIGTERM loses nothing already captured
        while batch := self.records.get_batch(BATCH):
            self.process(batch)

    def process(self, batch: list[bytes]) -> None:
        """Errors stop here: a bad batch is counted and dropped, never raised into the loop."""
        try:
            exchanges = self.decoder.decode(batch)
            spans = self.builder.build(exchanges, self.clock.offset())
            self._emit(spans)
        except Exception as exc:
            self.errors["processing"] += len(batch)
            log.exception("dropping a batch of %d records: %s", len(batch), exc)
        self.last_progress = time.monotonic()

    def _emit(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        self._enrich(spans)
        groups = SpanGroups(spans)  # once for RED and every observer
        self.red.observe_groups(groups)
        for observe in self.span_observers:
            observe(groups)
        self.spans_collected += len(spans)
        self._submit(spans)

    def decode_errors(self) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter(self.decoder.errors)
        out.update(self.builder.decode_errors)
        out.update(self.errors)
        return dict(out)

    def healthy(self) -> tuple[bool, str]:
        if self.thread_died():
            return False, "processing thread died"
        if len(self.records) and time.monotonic() - self.last_progress > 60:
            return False, "pipeline made no progress for 60 s while events were waiting"
        return True, ""

    def status(self) -> dict[str, Any]:
        return {"spans_collected": self.spans_collected, "queue": self.records.stats(),
                "decode_errors": self.decode_errors(), "red": self.red.stats()}
