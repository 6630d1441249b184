"""The processing worker: raw records -> decode -> spans -> enrich -> RED + export, in batches.

One thread, as design.md section 5 puts it; telegen.governor steers how much reaches it.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.red import RedMetrics
from telegen.assemble.span_groups import SpanGroups
from telegen.clock import MonotonicToWall
from telegen.decode.records import RecordDecoder
from telegen.decode.thinning import RecordThinner
from telegen.pipeline import BoundedQueue, QueueWorker
from telegen.signals import SpanRecord

log = logging.getLogger(__name__)

BATCH = 4096
# Records processed between two sched_yield() calls, by agent.cpu_scheduling mode. A workload
# thread waking on this CPU under SCHED_OTHER waits for the agent's slice to run out (1.4 ms
# with EEVDF on 2 CPUs), and a 250-record drain at 5,000 req/s is 1-2 ms of processing: with
# `hey`, p99 2.2-2.5 ms without chunks, 1.1-1.4 in chunks of 64 (32 cost 2 ms more CPU per 1k
# requests for no better tail). In the background mode the workload preempts the agent at
# once (telegen/cpu_scheduling.py) and the yields only cost: with bench/loadgen.c, p99 29.0,
# 29.2 and 29.5 µs in chunks of 64, 256 and none, agent CPU 10.5, 9.2 and 8.8 ms per 1k
# requests, p999 580, 540 and 673 µs. Each chunk pays the per-batch work once.
YIELD_EVERY = {"background": 256, "normal": 64}


class ProcessingWorker(QueueWorker):
    name = "processing"
    thread_name = "telegen-processing"

    def __init__(self, records: BoundedQueue[bytes], decoder: RecordDecoder, builder: HttpSpanBuilder,
                 red: RedMetrics, enrich: Callable[[list[SpanRecord]], None],
                 submit: Callable[[list[SpanRecord]], None], kernel_keep: Callable[[], int] = lambda: 1000,
                 cpu_scheduling: str = "normal") -> None:
        super().__init__(records)
        self.cpu_scheduling = cpu_scheduling  # agent.cpu_scheduling: the chunk size (YIELD_EVERY); reload sets it
        self.decoder = decoder
        # The kernel's keep rate now (permille): queued records drawn at a higher one are
        # re-drawn at it before decode, so a flood cut also cuts the backlog it left.
        self._kernel_keep = kernel_keep
        self.thinner = RecordThinner(decoder.layout)
        self.builder = builder
        self.red = red
        self._enrich = enrich
        self._submit = submit
        self.clock = MonotonicToWall()
        self.spans_collected = 0
        # Called with each enriched batch, grouped (e.g. the service map); errors are the observer's own.
        self.span_observers: list[Callable[[SpanGroups], None]] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.error = ""

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self.records.get_batch(BATCH, timeout=0.2)
            step = YIELD_EVERY[self.cpu_scheduling]
            for start in range(0, len(batch), step):
                self.process(batch[start:start + step])
                os.sched_yield()
        # drain what is left so SIGTERM loses nothing already captured
        while batch := self.records.get_batch(BATCH):
            self.process(batch)

    def process(self, batch: list[bytes]) -> None:
        """Errors stop here: a bad batch is counted and dropped, never raised into the loop."""
        try:
            exchanges = self.decoder.decode(self.thinner.thin(batch, self._kernel_keep()))
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
