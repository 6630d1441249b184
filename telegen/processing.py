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
# Records processed between two sched_yield() calls (about 0.6 ms of work). A workload thread
# waking on this CPU otherwise waits for the agent's slice to run out (1.4 ms with EEVDF on
# 2 CPUs): a 250-record drain at 5,000 req/s is 2-3 ms of processing, and it showed in nginx's
# p99 (1.6-2.0 ms against 0.8-1.0 with the agent's user space stopped; 0.7-1.1 yielding). Each
# chunk pays the per-batch work once (live, 5,000 req/s, ms of agent CPU per 1k requests / p99:
# chunks of 32 15.2-17.5 / 1.3-1.4 ms, 64 13.7-15.6 / 1.1-1.4, 128 12.3-14.1 / 1.2-1.6, none
# 12.5-14.7 / 2.2-2.5).
YIELD_EVERY = 64


class ProcessingWorker(QueueWorker):
    name = "processing"
    thread_name = "telegen-processing"

    def __init__(self, records: BoundedQueue[bytes], decoder: RecordDecoder, builder: HttpSpanBuilder,
                 red: RedMetrics, enrich: Callable[[list[SpanRecord]], None],
                 submit: Callable[[list[SpanRecord]], None], kernel_keep: Callable[[], int] = lambda: 1000) -> None:
        super().__init__(records)
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
            for start in range(0, len(batch), YIELD_EVERY):
                self.process(batch[start:start + YIELD_EVERY])
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
